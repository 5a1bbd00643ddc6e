namespace PeerSharp.Experiments;

/// <summary>
/// PEER with and without BatchNorm on the queries (paper Section 3.3, Table 2): expert usage, unevenness and
/// bpb per N, the two settings side by side as in the paper.
/// </summary>
static class BatchNormSection
{
    public static void Write(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points)
    {
        var pairs = points.GroupBy(p => (p.Budget, p.First.Config.Model.PeerOptions.SubKeyCount)).OrderBy(g => g.Key.Budget).ThenBy(g => g.Key.SubKeyCount);
        markdown.Table(
            ["budget", "N", "usage, BN", "usage, no BN", "unevenness, BN", "unevenness, no BN", "validation bpb, BN", "validation bpb, no BN", "seeds (BN, no BN)"],
            "lrrrrrrrr",
            pairs.Select(pair =>
            {
                var on = pair.FirstOrDefault(p => p.First.Config.Model.PeerOptions.QueryBatchNorm);
                var off = pair.FirstOrDefault(p => !p.First.Config.Model.PeerOptions.QueryBatchNorm);
                string Cell(ResultPoint? p, Func<ResultPoint, string> value) => p is null ? ReportFormat.Unknown : value(p);
                return (IReadOnlyList<string>)[
                    ReportFormat.Budget(pair.Key.Budget), ReportFormat.ExpertCount(pair.Key.SubKeyCount),
                    Cell(on, p => p.Of(r => ResultPoint.Usage(r.Validation.Layers)).Percent()), Cell(off, p => p.Of(r => ResultPoint.Usage(r.Validation.Layers)).Percent()),
                    Cell(on, p => p.Of(r => ResultPoint.Unevenness(r.Validation.Layers)).Format("F2")), Cell(off, p => p.Of(r => ResultPoint.Unevenness(r.Validation.Layers)).Format("F2")),
                    Cell(on, p => p.Of(r => r.Validation.BitsPerByte).Format("F3")), Cell(off, p => p.Of(r => r.Validation.BitsPerByte).Format("F3")),
                    $"{on?.Seeds.Count ?? 0}, {off?.Seeds.Count ?? 0}"];
            }));
        markdown.Paragraph("Usage and unevenness over the validation text at the end of training (lower unevenness is more even); a dash: that half of the pair is not yet run.");
    }
}
