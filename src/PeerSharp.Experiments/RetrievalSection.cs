namespace PeerSharp.Experiments;

/// <summary>
/// The levers against the retrieval collapse (DESIGN.md "Keeping experts alive"), on the README model at equal steps:
/// one table per experiment (the one-seed screen, then the two-seed confirmation), each row a configuration with its
/// bits per byte on the whole validation text, expert usage, unevenness, distinct first choices and training speed.
/// </summary>
static class RetrievalSection
{
    public static void Write(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points)
    {
        RunTable.Write(markdown, points, [
            RunTable.Run, RunTable.Method("lever"), RunTable.ExpertCount, RunTable.Seeds, RunTable.ValidationBitsPerByte,
            RunTable.Usage, RunTable.Unevenness,
            new("first choices / head", 'r', p => p.Of(r => r.Validation.Layers.Count == 0 ? double.NaN : r.Validation.Layers.Average(l => l.FirstChoices)).Format("N0")),
            RunTable.TokensPerSecond]);
        markdown.Paragraph("Rows by N, then by validation bpb (lower is better). Scores are over the whole validation text at the final step; " +
                           "usage, unevenness and first choices are means over the model's PEER layers. Tokens per second were measured " +
                           "while other work shared the 2-core machine, so they are indicative only.");
    }
}
