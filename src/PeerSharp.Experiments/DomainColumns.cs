namespace PeerSharp.Experiments;

/// <summary>
/// Bits per byte by domain beside the whole split's: one column per validation or test part
/// (<see cref="SweepData.ValidationParts"/>, <see cref="SweepData.TestParts"/>) and per out-of-domain text
/// (<see cref="SweepData.OutOfDomain"/>) that any run of a table was scored on, such as "validation books bpb" or
/// "out-of-domain mail bpb". A table whose runs have none gets no column, so it reads as before.
/// </summary>
sealed class DomainColumns
{
    readonly IReadOnlyList<string> _validation, _test, _outOfDomain;

    DomainColumns(IReadOnlyList<string> validation, IReadOnlyList<string> test, IReadOnlyList<string> outOfDomain) =>
        (_validation, _test, _outOfDomain) = (validation, test, outOfDomain);

    /// <summary>The parts of <paramref name="results"/>, each name once, in the order the runs list them.</summary>
    public static DomainColumns Of(IEnumerable<SweepResult> results)
    {
        var list = results.ToList();
        return new([.. list.SelectMany(r => r.ValidationParts ?? []).Select(p => p.Name).Distinct()],
                   [.. list.SelectMany(r => r.TestParts ?? []).Select(p => p.Name).Distinct()],
                   [.. list.SelectMany(r => r.OutOfDomain ?? []).Select(p => p.Name).Distinct()]);
    }

    /// <summary>The parts of every run of <paramref name="points"/>.</summary>
    public static DomainColumns Of(IEnumerable<ResultPoint> points) => Of(points.SelectMany(p => p.Seeds));

    /// <summary>The column headings.</summary>
    public IReadOnlyList<string> Header =>
        [.. _validation.Select(n => $"validation {n} bpb"), .. _test.Select(n => $"test {n} bpb"), .. _outOfDomain.Select(n => $"out-of-domain {n} bpb")];

    /// <summary>One 'r' per column, for <see cref="MarkdownWriter.Table"/>.</summary>
    public string Align => new('r', _validation.Count + _test.Count + _outOfDomain.Count);

    /// <summary>A point's cells: each part's bits per byte over its seeds (a dash where a seed lacks the part).</summary>
    public IReadOnlyList<string> Cells(ResultPoint point) =>
        [.. Values().Select(value => point.Of(value).Format("F3"))];

    /// <summary>One run's cells.</summary>
    public IReadOnlyList<string> Cells(SweepResult run) =>
        [.. Values().Select(value => ReportFormat.Number(value(run), "F3"))];

    IEnumerable<Func<SweepResult, double>> Values() =>
        [.. _validation.Select(n => (Func<SweepResult, double>)(r => Part(r.ValidationParts, n))),
         .. _test.Select(n => (Func<SweepResult, double>)(r => Part(r.TestParts, n))),
         .. _outOfDomain.Select(n => (Func<SweepResult, double>)(r => Part(r.OutOfDomain, n)))];

    static double Part(IReadOnlyList<PartScore>? parts, string name) =>
        parts?.FirstOrDefault(p => p.Name == name)?.Score.BitsPerByte ?? double.NaN;
}
