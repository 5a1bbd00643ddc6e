using PeerSharp.Evaluation;

namespace PeerSharp.Experiments;

/// <summary>A value over seeds: the mean, and the sample standard deviation when there are two seeds or more.</summary>
/// <param name="Mean">Mean over the seeds that have the value (NaN if none has it).</param>
/// <param name="Deviation">Sample standard deviation (0 for one seed).</param>
/// <param name="Count">Seeds that have the value.</param>
readonly record struct Estimate(double Mean, double Deviation, int Count)
{
    /// <summary>The estimate of values that may be NaN (a seed without the value).</summary>
    public static Estimate Of(IEnumerable<double> values)
    {
        var known = values.Where(v => !double.IsNaN(v)).ToList();
        if (known.Count == 0) return new(double.NaN, 0, 0);
        var mean = known.Average();
        var deviation = known.Count < 2 ? 0 : Math.Sqrt(known.Sum(v => (v - mean) * (v - mean)) / (known.Count - 1));
        return new(mean, deviation, known.Count);
    }

    /// <summary>
    /// "2.345", or "2.345 ± 0.012" over two seeds or more; a dash when no seed has the value. The deviation takes
    /// <paramref name="deviationFormat"/> where given (a signed mean's deviation is written without a sign).
    /// </summary>
    public string Format(string format, string? deviationFormat = null) => Count switch
    {
        0 => ReportFormat.Unknown,
        1 => ReportFormat.Number(Mean, format),
        _ => $"{ReportFormat.Number(Mean, format)} ± {ReportFormat.Number(Deviation, deviationFormat ?? format)}",
    };

    /// <summary>
    /// Whether this estimate and <paramref name="other"/> differ by more than the sum of their seed deviations, the
    /// report's "beyond the seed spread"; null when either has fewer than two seeds, so that there is no spread.
    /// </summary>
    public bool? DiffersBeyondSpread(Estimate other) =>
        Count < 2 || other.Count < 2 ? null : Math.Abs(other.Mean - Mean) > Deviation + other.Deviation;

    /// <summary>A fraction as a percentage: "17.0%" or "17.0 ± 0.3%".</summary>
    public string Percent() => Count == 0 ? ReportFormat.Unknown : new Estimate(100 * Mean, 100 * Deviation, Count).Format("F1") + "%";
}

/// <summary>
/// One configuration of an experiment at one budget, over its seeds: a point of a figure, a row of a table.
/// Seeds share the config, so the model's shape, parameters and FLOPs are read from the first.
/// </summary>
sealed class ResultPoint
{
    ResultPoint(IReadOnlyList<SweepResult> seeds) => Seeds = seeds;

    /// <summary>The runs, one per seed, in seed order.</summary>
    public IReadOnlyList<SweepResult> Seeds { get; }

    /// <summary>The first seed's run, for what every seed shares.</summary>
    public SweepResult First => Seeds[0];

    /// <summary>The run's name in the spec.</summary>
    public string Run => First.Run;

    /// <summary>The method label.</summary>
    public string Method => First.Method;

    /// <summary>The training-FLOP budget.</summary>
    public double Budget => First.Budget;

    /// <summary>The estimate of <paramref name="value"/> over the seeds.</summary>
    public Estimate Of(Func<SweepResult, double> value) => Estimate.Of(Seeds.Select(value));

    /// <summary>Mean final validation bits per byte: what compute-optimal means here.</summary>
    public double ValidationBitsPerByte => Of(r => r.Validation.BitsPerByte).Mean;

    /// <summary>n of the run's PEER layer.</summary>
    public int SubKeyCount => First.Config.Model.PeerOptions.SubKeyCount;

    /// <summary>N = n² of the run's PEER layer.</summary>
    public double ExpertCount => (double)SubKeyCount * SubKeyCount;

    /// <summary>Groups results by experiment, run and budget; points come out ordered by budget, method and parameters.</summary>
    public static IReadOnlyList<ResultPoint> Group(IEnumerable<SweepResult> results) =>
        [.. results.GroupBy(r => (r.Experiment, r.Run, r.Budget))
                   .Select(g => new ResultPoint([.. g.OrderBy(r => r.Seed)]))
                   .OrderBy(p => p.Budget).ThenBy(p => MethodOrder(p.Method)).ThenBy(p => p.Method, StringComparer.Ordinal)
                   .ThenBy(p => p.First.Parameters).ThenBy(p => p.Run, StringComparer.Ordinal)];

    /// <summary>The paper's order of methods (dense, MoE, PKM, PEER), other labels after them.</summary>
    public static int MethodOrder(string method) => Array.IndexOf(KnownMethods, method) is var i and >= 0 ? i : KnownMethods.Length;

    /// <summary>The methods of the isoFLOP comparison, in the paper's order.</summary>
    public static readonly string[] KnownMethods = ["dense", "moe", "pkm", "peer"];

    /// <summary>Mean expert usage over a score's PEER or PKM layers; NaN for a model without any.</summary>
    public static double Usage(IReadOnlyList<LayerUsage> layers) => layers.Count == 0 ? double.NaN : layers.Average(l => l.Usage);

    /// <summary>Mean unevenness (nats) over a score's PEER or PKM layers; NaN for a model without any.</summary>
    public static double Unevenness(IReadOnlyList<LayerUsage> layers) => layers.Count == 0 ? double.NaN : layers.Average(l => l.Unevenness);
}
