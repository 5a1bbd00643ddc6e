using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using PeerSharp.Checkpoints;
using PeerSharp.Config;

namespace PeerSharp.Experiments;

/// <summary>Where a sweep's text comes from; paths relative to the spec file's folder.</summary>
public sealed record SweepData
{
    /// <summary>Training text (<see cref="Data.TextSource"/>); null: the bundled books.</summary>
    public string? Train { get; init; }

    /// <summary>Validation text, scored during the runs; null: the bundled validation book.</summary>
    public string? Validation { get; init; }

    /// <summary>Test text, scored once at the end of each run for the final report; null: none.</summary>
    public string? Test { get; init; }

    /// <summary>
    /// The validation split by domain (data/benchmark's validation-books and validation-speeches): each part is
    /// scored at the end of the run, and the run's final validation score is all of them together
    /// (<see cref="Evaluation.Evaluator.EvaluateParts"/>); <see cref="Validation"/> is still what the validations
    /// during training score. Null: the final score is <see cref="Validation"/>'s.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public TextPart[]? ValidationParts { get; init; }

    /// <summary>The test split by domain, scored as <see cref="ValidationParts"/> are, in place of <see cref="Test"/>; null: <see cref="Test"/> is scored whole.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public TextPart[]? TestParts { get; init; }

    /// <summary>
    /// Texts of domains the training text lacks (data/mail's test split: email, where training has books and
    /// speeches), each scored on its own at the end of the run, to the same length as the test text, and never part
    /// of the validation or test score: how the model does out of its domain (issue 20, item 6). Null: none.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public TextPart[]? OutOfDomain { get; init; }

    /// <summary>The same texts with their paths made full from <paramref name="folder"/>, the spec's.</summary>
    internal SweepData Resolved(string folder)
    {
        string? Resolve(string? path) => path is null ? null : Path.GetFullPath(Path.Combine(folder, path));
        TextPart[]? ResolveParts(TextPart[]? parts) => parts?.Select(p => p with { Path = Resolve(p.Path)! }).ToArray();
        return new SweepData
        {
            Train = Resolve(Train), Validation = Resolve(Validation), Test = Resolve(Test),
            ValidationParts = ResolveParts(ValidationParts), TestParts = ResolveParts(TestParts), OutOfDomain = ResolveParts(OutOfDomain),
        };
    }

    /// <summary>Throws unless the parts are well formed: named, each name once, a path each, and test parts only in place of a whole test text.</summary>
    internal void Validate(string where)
    {
        foreach (var (parts, what) in new[] { (ValidationParts, "validation part"), (TestParts, "test part"), (OutOfDomain, "out-of-domain text") })
        {
            if (parts is null) continue;
            if (parts.Length == 0) throw new PeerSharpException($"{where}: the {what}s are an empty list; expected at least one part, or no list");
            foreach (var part in parts)
                if (string.IsNullOrWhiteSpace(part?.Name) || string.IsNullOrWhiteSpace(part.Path))
                    throw new PeerSharpException($"{where}: a {what} '{part?.Name}' needs a name and a path");
            var twice = parts.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
            if (twice is not null) throw new PeerSharpException($"{where} names the {what} '{twice.Key}' twice");
        }
        if (TestParts is not null && Test is not null)
            throw new PeerSharpException($"{where} gives both a test text '{Test}' and test parts; expected one of them");
    }
}

/// <summary>A named part of a held-out text, such as a split's books.</summary>
/// <param name="Name">The part's name in results and the report ("books", "speeches").</param>
/// <param name="Path">Its text, relative to the spec file's folder.</param>
public sealed record TextPart(string Name, string Path);

/// <summary>One named configuration of a sweep: a method at one size, as an overlay on the spec's base config.</summary>
public sealed record SweepRun
{
    /// <summary>Unique name within the spec, such as "peer-m".</summary>
    public required string Name { get; init; }

    /// <summary>The method it belongs to in the report ("dense", "moe", "pkm", "peer", or an ablation's label).</summary>
    public required string Method { get; init; }

    /// <summary>JSON overlay on <see cref="SweepSpec.Base"/> (any subset of a config file's fields).</summary>
    public JsonObject Config { get; init; } = [];

    /// <summary>Budgets for this run alone; null: the spec's.</summary>
    public double[]? Budgets { get; init; }
}

/// <summary>
/// A grid of training runs at fixed training-FLOP budgets (the paper's isoFLOP protocol): every run of
/// <see cref="Runs"/> at every budget and seed, with steps = budget / training FLOPs per step and the same
/// tokens per step and context everywhere. Written as JSON (experiments/*.json); see docs/EXPERIMENTS.md.
/// </summary>
public sealed record SweepSpec
{
    /// <summary>The experiment's name; results and run folders are keyed by it.</summary>
    public required string Name { get; init; }

    /// <summary>What the experiment asks, one or two sentences for the report.</summary>
    public string Description { get; init; } = "";

    /// <summary>The preset the base config starts from.</summary>
    public string Preset { get; init; } = Presets.Default;

    /// <summary>JSON overlay on the preset shared by every run (tokens per step, context, schedule, evaluation).</summary>
    public JsonObject Base { get; init; } = [];

    /// <summary>The text.</summary>
    public SweepData Data { get; init; } = new();

    /// <summary>Training-FLOP budgets every run is trained to.</summary>
    public double[] Budgets { get; init; } = [];

    /// <summary>
    /// Equal steps instead of equal FLOPs: every run trains this many steps (its budget is then what they cost), for
    /// comparisons at equal tokens such as the retrieval ablation; null: the <see cref="Budgets"/> protocol.
    /// </summary>
    public int? Steps { get; init; }

    /// <summary>Seeds (initialisation and data order); each run at each budget once per seed.</summary>
    public long[] Seeds { get; init; } = [1337];

    /// <summary>
    /// Seeds trained again, once the grid is done, at each method's compute-optimal run per budget (see
    /// <see cref="Sweep.Confirmations"/>): the noise where methods are compared, at a fraction of the grid's cost.
    /// </summary>
    public long[] ConfirmationSeeds { get; init; } = [];

    /// <summary>Validations per run (usage is measured at each); the last is at the final step.</summary>
    public int Validations { get; init; } = 4;

    /// <summary>Tokens of the final test score (null: the base config's validation tokens).</summary>
    public long? FinalEvalTokens { get; init; }

    /// <summary>Fraction of each run's steps spent warming the learning rate up (at most the base config's warm-up).</summary>
    public double WarmupFraction { get; init; } = 0.05;

    /// <summary>The configurations.</summary>
    public SweepRun[] Runs { get; init; } = [];

    /// <summary>Reads a spec file; a <see cref="PeerSharpException"/> names what is wrong.</summary>
    public static SweepSpec Load(string path)
    {
        var spec = Read<SweepSpec>(path, "sweep spec");
        spec.Validate(path);
        return spec;
    }

    /// <summary>Reads a spec file of any kind (<paramref name="kind"/> names it in errors), not yet validated.</summary>
    internal static T Read<T>(string path, string kind)
    {
        if (!File.Exists(path)) throw new PeerSharpException($"{kind} '{path}' does not exist");
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), RunConfig.Json)
                ?? throw new PeerSharpException($"{kind} '{path}' is empty; expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new PeerSharpException($"{kind} '{path}' is not valid: {e.Message}");
        }
    }

    /// <summary>
    /// The spec cut to the runs named (every seed and budget of each), for `peer sweep --only`: a few runs added to a
    /// long spec can run before the rest. Without confirmation seeds, since those pick each method's best run of the
    /// whole grid, which a part of it cannot tell. A name the spec lacks is an error that lists its runs.
    /// </summary>
    public SweepSpec Only(IReadOnlyCollection<string> runNames)
    {
        if (runNames.Count == 0) throw new PeerSharpException($"sweep '{Name}': no run named to keep");
        var unknown = runNames.Where(name => Runs.All(r => r.Name != name)).ToList();
        if (unknown.Count > 0)
            throw new PeerSharpException($"sweep '{Name}' has no run {string.Join(", ", unknown.Select(n => $"'{SafetensorsFile.Printable(n)}'"))}; its runs: {string.Join(", ", Runs.Select(r => r.Name))}");
        return this with { Runs = [.. Runs.Where(r => runNames.Contains(r.Name))], ConfirmationSeeds = [] };
    }

    /// <summary>Throws unless <paramref name="name"/>, which names a folder of its own, is a plain file name that is not blank (<see cref="FileNames.IsPlain"/>).</summary>
    internal static void CheckPlainName(string name, string where, string what)
    {
        if (string.IsNullOrWhiteSpace(name) || !FileNames.IsPlain(name))
            throw new PeerSharpException($"{where}: {what} '{SafetensorsFile.Printable(name ?? "")}' must be a plain file name (not blank, no '/', '\\' or control character, not '.' or '..'), since it names a folder of its own");
    }

    void Validate(string path)
    {
        CheckPlainName(Name, $"sweep spec '{path}'", "name");
        if (Runs.Length == 0) throw new PeerSharpException($"sweep spec '{path}' has no runs");
        if (Steps is { } steps && (steps < Validations || Budgets.Length > 0 || Runs.Any(r => r.Budgets is not null)))
            throw new PeerSharpException($"sweep spec '{path}': steps {steps} must be at least its {Validations} validations and come without budgets");
        if (Seeds.Length == 0) throw new PeerSharpException($"sweep spec '{path}' has no seeds");
        if (Validations < 1) throw new PeerSharpException($"sweep spec '{path}': validations {Validations} must be at least 1");
        if (FinalEvalTokens is <= 0) throw new PeerSharpException($"sweep spec '{path}': final eval tokens {FinalEvalTokens} must be positive");
        if (!(WarmupFraction >= 0 && WarmupFraction < 1)) throw new PeerSharpException($"sweep spec '{path}': warm-up fraction {WarmupFraction} must be in [0, 1)");
        Data.Validate($"sweep spec '{path}'");
        var duplicate = Runs.GroupBy(r => r.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new PeerSharpException($"sweep spec '{path}' names run '{duplicate.Key}' twice");
        foreach (var run in Runs)
        {
            CheckPlainName(run.Name, $"sweep spec '{path}'", "run name");
            var budgets = run.Budgets ?? Budgets;
            if (Steps is not null) continue;
            if (budgets.Length == 0) throw new PeerSharpException($"sweep spec '{path}': run '{run.Name}' has no budget");
            if (budgets.Any(b => !(b > 0) || double.IsInfinity(b))) throw new PeerSharpException($"sweep spec '{path}': run '{run.Name}' has a budget that is not a positive number");
        }
    }
}
