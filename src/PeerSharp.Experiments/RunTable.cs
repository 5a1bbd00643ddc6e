namespace PeerSharp.Experiments;

/// <summary>
/// A table of runs at equal steps, one row per configuration, by N and then by final validation bpb: what the
/// retrieval and table-state sections share. Each section picks its columns from the common ones here and adds its own.
/// </summary>
static class RunTable
{
    /// <summary>A column: its header, its alignment ('l' or 'r') and a point's cell.</summary>
    public sealed record Column(string Header, char Align, Func<ResultPoint, string> Cell);

    public static Column Run => new("run", 'l', p => p.Run);
    public static Column Method(string header) => new(header, 'l', p => p.Method);
    public static Column ExpertCount => new("N", 'r', p => ReportFormat.ExpertCount(p.SubKeyCount));
    public static Column Seeds => new("seeds", 'r', p => p.Seeds.Count.ToString());
    public static Column ValidationBitsPerByte => new("validation bpb", 'r', p => p.Of(r => r.Validation.BitsPerByte).Format("F3"));
    public static Column Usage => new("usage", 'r', p => p.Of(r => ResultPoint.Usage(r.Validation.Layers)).Percent());
    public static Column Unevenness => new("unevenness", 'r', p => p.Of(r => ResultPoint.Unevenness(r.Validation.Layers)).Format("F2"));
    public static Column TokensPerSecond => new("training tokens / s", 'r', p => p.Of(r => r.TokensPerSecond).Format("N0"));

    /// <summary>The rows by N, then by validation bpb (lower is better).</summary>
    public static void Write(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points, IReadOnlyList<Column> columns) =>
        markdown.Table([.. columns.Select(c => c.Header)], new string([.. columns.Select(c => c.Align)]),
            points.OrderBy(p => p.SubKeyCount).ThenBy(p => p.ValidationBitsPerByte)
                  .Select(p => (IReadOnlyList<string>)[.. columns.Select(c => c.Cell(p))]));
}
