using System.Text.Json.Serialization;
using PeerSharp.Config;
using PeerSharp.Evaluation;
using PeerSharp.Growth;

namespace PeerSharp.Experiments;

/// <summary>One validation during a run: how bits per byte and expert usage moved with training.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="TokensSeen">Training tokens seen.</param>
/// <param name="BitsPerByte">Validation bits per byte.</param>
/// <param name="Layers">Usage and unevenness per PEER or PKM layer.</param>
/// <param name="Text">Null for the run's validation text; otherwise the name of another text scored at the same step (the lifelong experiment's "A").</param>
public sealed record CurvePoint(long Step, long TokensSeen, double BitsPerByte, IReadOnlyList<LayerUsage> Layers, string? Text = null);

/// <summary>A scored text: loss, bits per byte, perplexity and expert usage.</summary>
/// <param name="Loss">Nats per token.</param>
/// <param name="BitsPerByte">Bits per UTF-8 byte.</param>
/// <param name="Perplexity">Per token.</param>
/// <param name="Tokens">Tokens scored.</param>
/// <param name="Layers">Usage and unevenness per PEER or PKM layer.</param>
public sealed record Score(double Loss, double BitsPerByte, double Perplexity, long Tokens, IReadOnlyList<LayerUsage> Layers)
{
    /// <summary>The score of an evaluation.</summary>
    public static Score Of(EvaluationResult result) => new(result.Loss, result.BitsPerByte, result.Perplexity, result.Tokens, result.Layers);
}

/// <summary>The score of one part of a held-out text (<see cref="TextPart"/>).</summary>
/// <param name="Name">The part's name.</param>
/// <param name="Score">Its score.</param>
public sealed record PartScore(string Name, Score Score);

/// <summary>One part of the forward FLOPs per token.</summary>
/// <param name="Part">What is computed.</param>
/// <param name="Flops">Forward FLOPs per token.</param>
public sealed record FlopPart(string Part, double Flops);

/// <summary>
/// One finished run of a sweep: a line of the results file (experiments/NAME.results.jsonl). The report is
/// generated from these lines alone.
/// </summary>
public sealed record SweepResult
{
    /// <summary>"RUN@BUDGET#SEED": unique within the experiment; a rerun of the sweep skips ids already present.</summary>
    public required string Id { get; init; }

    /// <summary>The spec's name.</summary>
    public required string Experiment { get; init; }

    /// <summary>The run's name in the spec.</summary>
    public required string Run { get; init; }

    /// <summary>The run's method label.</summary>
    public required string Method { get; init; }

    /// <summary>The training-FLOP budget.</summary>
    public required double Budget { get; init; }

    /// <summary>The seed.</summary>
    public required long Seed { get; init; }

    /// <summary>The full resolved config.</summary>
    public required RunConfig Config { get; init; }

    /// <summary>The spec's text paths, as written (null in lines of older versions).</summary>
    public SweepData? Data { get; init; }

    /// <summary>The folder <see cref="Data"/>'s paths are relative to, the spec's (null in lines of older versions: the results file's folder, where specs keep their results).</summary>
    public string? DataFolder { get; init; }

    /// <summary>Tokens the spec asked the final test score to read (null in lines of older versions).</summary>
    public long? FinalEvalTokens { get; init; }

    /// <summary>"EXPERIMENT/ID" of the run this line was copied from, where another experiment had trained the same model at the same budget and seed; null where it was trained for this one.</summary>
    public string? ReusedFrom { get; init; }

    /// <summary>
    /// The CPU and its vector instructions where the run finished (<see cref="MachineInfo.Numerics"/>); null in lines of
    /// older versions. Same seed, same settings, same machine: the same numbers; another CPU family gives other
    /// roundings, because libtorch picks its kernels by the vector instructions it finds (docs/DESIGN.md, "Reproducibility across machines").
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Machine { get; init; }

    /// <summary>Every parameter.</summary>
    public long Parameters { get; init; }

    /// <summary>Parameters one token's forward uses.</summary>
    public double ActiveParameters { get; init; }

    /// <summary>Forward FLOPs per token, total.</summary>
    public double ForwardFlopsPerToken { get; init; }

    /// <summary>Forward FLOPs per token by part.</summary>
    public IReadOnlyList<FlopPart> FlopsByPart { get; init; } = [];

    /// <summary>Optimizer steps (budget / training FLOPs per step, rounded down).</summary>
    public long Steps { get; init; }

    /// <summary>Training tokens.</summary>
    public long Tokens { get; init; }

    /// <summary>Training FLOPs actually spent (≤ the budget).</summary>
    public double TrainingFlops { get; init; }

    /// <summary>Wall-clock seconds of training (validations and checkpoints excluded), summed over interruptions.</summary>
    public double WallSeconds { get; init; }

    /// <summary>
    /// CPU seconds of the training process over the run (validations included), summed over interruptions: the
    /// work done, which other load on a shared machine disturbs less than the wall time.
    /// </summary>
    public double CpuSeconds { get; init; }

    /// <summary>Training tokens per second.</summary>
    public double TokensPerSecond { get; init; }

    /// <summary>The final validation.</summary>
    public required Score Validation { get; init; }

    /// <summary>The test score, if the spec has test text.</summary>
    public Score? Test { get; init; }

    /// <summary>The final validation by domain, where the spec names <see cref="SweepData.ValidationParts"/>; <see cref="Validation"/> is then all of them together.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<PartScore>? ValidationParts { get; init; }

    /// <summary>The test score by domain, where the spec names <see cref="SweepData.TestParts"/>; <see cref="Test"/> is then all of them together.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<PartScore>? TestParts { get; init; }

    /// <summary>The scores of the spec's <see cref="SweepData.OutOfDomain"/> texts, each on its own (null when it names none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<PartScore>? OutOfDomain { get; init; }

    /// <summary>Every validation of the run, for usage over training.</summary>
    public IReadOnlyList<CurvePoint> Curve { get; init; } = [];

    /// <summary>A grown lifelong arm's routing to its grown experts per domain, at growth and at the end (null otherwise).</summary>
    public IReadOnlyList<RoutingScore>? Routing { get; init; }

    /// <summary>The id of the run whose checkpoint this one continued (a lifelong arm's phase-1 run or phase-2 arm); null: from scratch, or not recorded.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ContinuesFrom { get; init; }

    /// <summary>
    /// The id of the phase-1 run whose model a lifelong arm trained on B alone from a fresh initialisation
    /// (<see cref="LifelongArm.FromScratch"/>, forward transfer's reference); null otherwise.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ScratchOf { get; init; }

    /// <summary>When the run finished (UTC).</summary>
    public DateTime FinishedAt { get; init; }
}

/// <summary>How one domain's validation tokens split between old and grown experts in a grown model (<see cref="GrowthRouting.Measure"/>).</summary>
/// <param name="Text">"A" (the old domain) or "B" (the new one).</param>
/// <param name="When">"grown" (the checkpoint phase 2 starts from) or "end" (after phase 2).</param>
/// <param name="Layers">Per PEER and PKM layer.</param>
public sealed record RoutingScore(string Text, string When, IReadOnlyList<GrownRouting> Layers);
