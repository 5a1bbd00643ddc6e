namespace PeerSharp.Experiments;

/// <summary>
/// The expert tables' optimizer state and where their update runs (docs/SPARSE_UPDATES.md), on the README model at
/// equal steps: one row per run, by N, with bits per byte at each validation, usage, unevenness, speed, and the
/// machine whose roundings the line carries (DESIGN.md "Reproducibility across machines": rows from two machines
/// differ by the machine as well as by the setting).
/// </summary>
static class SparseUpdatesSection
{
    public static void Write(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points)
    {
        RunTable.Write(markdown, points, [
            RunTable.Run, RunTable.Method("table state and update"), RunTable.ExpertCount, RunTable.Seeds,
            new("validation bpb at each validation", 'l',
                p => string.Join(" / ", p.First.Curve.Where(c => c.Text is null).Select(c => ReportFormat.Number(c.BitsPerByte, "F3")))),
            RunTable.Usage, RunTable.Unevenness, RunTable.TokensPerSecond,
            new("machine", 'l', p => string.Join("; ", p.Seeds.Select(r => r.Machine ?? "not recorded").Distinct()))]);
        markdown.Paragraph("Rows by N, then by final validation bpb (lower is better), scored on the whole validation text; the curve column is " +
                           "the first seed's. \"not recorded\": a line written before results recorded their machine. Tokens per second " +
                           "were measured while other work shared the 2-core machine, so they are indicative only; the tables' memory is " +
                           "measured by `peer bench`, not here.");
    }
}
