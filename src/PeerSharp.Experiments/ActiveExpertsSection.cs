using PeerSharp.Layers;
using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// PEER with more active experts at the same N (paper Section 3.2, Figure 3b): bpb against h·k, the experts a
/// token uses, reached either with more heads h at a fixed k or with more experts per head k at a fixed h.
/// The two series are read from the runs' configs: runs that share k and differ in h, and runs that share h
/// and differ in k.
/// </summary>
static class ActiveExpertsSection
{
    sealed record Series(string Label, IReadOnlyList<ResultPoint> Points);

    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points)
    {
        var series = SeriesOf(points);
        var plot = new Plot();
        foreach (var (s, i) in series.Select((s, i) => (s, i)))
        {
            var line = plot.Add.ScatterLine(s.Points.Select(p => Math.Log2(Active(p))).ToArray(), s.Points.Select(p => p.ValidationBitsPerByte).ToArray());
            line.LegendText = s.Label;
            line.Color = ReportFigures.SeriesColor(i);
            line.LineWidth = 2;
            line.MarkerSize = 7;
        }
        var alone = points.Where(p => !series.Any(s => s.Points.Contains(p))).ToList();
        if (alone.Count > 0)
        {
            var others = plot.Add.ScatterPoints(alone.Select(p => Math.Log2(Active(p))).ToArray(), alone.Select(p => p.ValidationBitsPerByte).ToArray(), Colors.Black);
            others.LegendText = "in neither series";
            others.MarkerSize = 7;
        }
        ReportFigures.Log2Axis(plot.Axes.Bottom, points.Select(p => (double)Active(p)), hk => ReportFormat.Number(hk, "0"));
        plot.Title("PEER: active experts h·k at fixed N");
        plot.XLabel("active experts h·k (log scale)");
        plot.YLabel("validation bits per byte");
        plot.ShowLegend(Edge.Right);   // outside the data: an inside corner can hide a point
        figures.Add(markdown, plot, "active", "validation bits per byte against the number of active experts h·k");

        var domains = DomainColumns.Of(points);
        markdown.Table(["budget", "run", "N", "h", "k", "h·k", "series", "active / token", "validation bpb", "test bpb", .. domains.Header, "usage", "unevenness (nats)", "seeds"],
            "llrrrrlrrr" + domains.Align + "rrr",
            points.OrderBy(p => p.Budget).ThenBy(Active).ThenBy(p => Options(p).HeadCount).Select(p => (IReadOnlyList<string>)[
                ReportFormat.Budget(p.Budget), p.Run, ReportFormat.ExpertCount(Options(p).SubKeyCount), Options(p).HeadCount.ToString(), Options(p).TopK.ToString(),
                Active(p).ToString(), string.Join("; ", series.Where(s => s.Points.Contains(p)).Select(s => s.Label).DefaultIfEmpty(ReportFormat.Unknown)),
                ReportFormat.Si(p.First.ActiveParameters), p.Of(r => r.Validation.BitsPerByte).Format("F3"), p.Of(r => r.Test?.BitsPerByte ?? double.NaN).Format("F3"), .. domains.Cells(p),
                p.Of(r => ResultPoint.Usage(r.Validation.Layers)).Percent(), p.Of(r => ResultPoint.Unevenness(r.Validation.Layers)).Format("F2"), p.Seeds.Count.ToString()]));
        markdown.Paragraph("Series: runs that share k and differ in h (\"h varied\"), and runs that share h and differ in k (\"k varied\"); a run can be in both. " +
                           "Usage and unevenness over the validation text at the end of training.");
    }

    static PeerOptions Options(ResultPoint point) => point.First.Config.Model.PeerOptions;

    static int Active(ResultPoint point) => Options(point).HeadCount * Options(point).TopK;

    /// <summary>"h varied" for each k (and budget) with two h or more, "k varied" for each h with two k or more.</summary>
    static IReadOnlyList<Series> SeriesOf(IReadOnlyList<ResultPoint> points)
    {
        var budgets = points.Select(p => p.Budget).Distinct().Count();
        string At(double budget) => budgets > 1 ? $", {ReportFormat.Budget(budget)}" : "";
        var headsVaried = points.GroupBy(p => (p.Budget, Options(p).TopK))
            .Where(g => g.Select(p => Options(p).HeadCount).Distinct().Count() > 1)
            .Select(g => new Series($"h varied, k = {g.Key.TopK}{At(g.Key.Budget)}", [.. g.OrderBy(Active)]));
        var topKVaried = points.GroupBy(p => (p.Budget, Options(p).HeadCount))
            .Where(g => g.Select(p => Options(p).TopK).Distinct().Count() > 1)
            .Select(g => new Series($"k varied, h = {g.Key.HeadCount}{At(g.Key.Budget)}", [.. g.OrderBy(Active)]));
        return [.. headsVaried, .. topKVaried];
    }
}
