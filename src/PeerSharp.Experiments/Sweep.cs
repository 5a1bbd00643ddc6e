using System.Globalization;
using System.Text.Json;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Model;
using PeerSharp.Training;

namespace PeerSharp.Experiments;

/// <summary>One training run of a sweep: a configuration at a budget and seed, with its resolved settings.</summary>
/// <param name="Id">"RUN@BUDGET#SEED", the key of its results line.</param>
/// <param name="Run">The spec's configuration.</param>
/// <param name="Budget">Training FLOPs it may spend.</param>
/// <param name="Seed">Initialisation and data-order seed.</param>
/// <param name="Config">The resolved run settings, steps included.</param>
/// <param name="Flops">Its FLOPs per token and parameters.</param>
public sealed record SweepItem(string Id, SweepRun Run, double Budget, long Seed, RunConfig Config, FlopReport Flops)
{
    /// <summary>The checkpoint the item continues from (the lifelong experiment's phase 2); null: it starts from scratch.</summary>
    public string? StartFrom { get; init; }

    /// <summary>The step of <see cref="StartFrom"/>: the item trains from it to the config's steps (0 from scratch).</summary>
    public long StartStep { get; init; }

    /// <summary>The id of the run whose checkpoint the item continues (a lifelong arm's phase-1 run or phase-2 arm); null: none.</summary>
    public string? ContinuesFrom { get; init; }

    /// <summary>The replay text of an item that replays an earlier domain (<see cref="TrainConfig.ReplayFraction"/>); null: none.</summary>
    public string? ReplayFrom { get; init; }

    /// <summary>The checkpoint an item with an <see cref="TrainConfig.AnchorPull"/> is pulled toward; null: none.</summary>
    public string? AnchorFrom { get; init; }

    /// <summary>Validation texts scored besides the run's own at each validation (name, path; a null path: the bundled validation book).</summary>
    public IReadOnlyList<(string Name, string? Path)> AlsoScored { get; init; } = [];

    /// <summary>Training FLOPs the item spends: whole steps within the budget.</summary>
    public double TrainingFlops => Flops.TrainingFlopsPerStep(Config.Train.BatchSize) * (Config.Train.Steps - StartStep);

    /// <summary>The folder name of its run: the id without the characters file systems and shells dislike.</summary>
    public string FolderName => $"{Run.Name}_{Budget.ToString("0.###e0", CultureInfo.InvariantCulture)}_s{Seed}";
}

/// <summary>What a sweep reports as it goes (the CLI draws it; tests interrupt through it).</summary>
public interface ISweepObserver
{
    /// <summary>A run starts (or resumes at <paramref name="startStep"/>); <paramref name="remainingSeconds"/> estimates the whole sweep's rest, null before any rate is known.</summary>
    void RunStarted(int index, int count, SweepItem item, long startStep, double? remainingSeconds);

    /// <summary>A training step of the current run finished.</summary>
    void StepCompleted(SweepItem item, StepReport step);

    /// <summary>A run finished and its line was appended (or it was found in the results file and skipped: <paramref name="skipped"/>).</summary>
    void RunFinished(int index, int count, SweepItem item, SweepResult result, bool skipped);

    /// <summary>A finished run is trained again before the current one, for a checkpoint that is gone (<paramref name="why"/>).</summary>
    void Retraining(SweepItem item, string why) { }
}

/// <summary>
/// Runs a <see cref="SweepSpec"/>: every item not yet in the results file, one after another, each a
/// <see cref="TrainingRun"/> in RUNS/NAME/ITEM. Finished items are appended to the results file as one JSON line
/// and skipped on a rerun; an interrupted item resumes from its last checkpoint, bit for bit (DESIGN.md
/// "Conventions", determinism).
/// </summary>
public static class Sweep
{
    /// <summary>
    /// The items of a spec's grid, in order: each seed, at each seed the budgets (ascending), and at each budget the
    /// runs as listed. Seeds come outermost so that a sweep stopped part-way has the whole grid at its first seeds
    /// rather than every seed of its first runs, and budgets next so that it has whole isoFLOP curves of the small
    /// budgets (every method and size) rather than every budget of its first methods.
    /// </summary>
    public static IReadOnlyList<SweepItem> Plan(SweepSpec spec)
    {
        var basis = Basis(spec);
        return [.. spec.Seeds.SelectMany(seed => spec.Runs.SelectMany(run => Budgets(spec, basis, run).Select(budget => (run, budget)))
                                                          .OrderBy(point => point.budget)   // stable: the runs' order within a budget
                                                          .Select(point => Item(spec, basis, point.run, point.budget, seed)))];
    }

    /// <summary>
    /// The items that confirm the grid's winners: once every run has its first seed's result, each method's
    /// compute-optimal run per budget (lowest validation bits per byte) is trained again with every
    /// <see cref="SweepSpec.ConfirmationSeeds"/> seed, so the report can show the noise where the comparison is
    /// made. Empty until the grid's first seed is complete, so the choice never rests on part of the grid.
    /// </summary>
    public static IReadOnlyList<SweepItem> Confirmations(SweepSpec spec, IReadOnlyDictionary<string, SweepResult> results)
    {
        if (spec.ConfirmationSeeds.Length == 0) return [];
        var firstSeed = Plan(spec).Where(item => item.Seed == spec.Seeds[0]).ToList();
        if (firstSeed.Any(item => !results.ContainsKey(item.Id))) return [];
        var basis = Basis(spec);
        return [.. firstSeed.GroupBy(item => (item.Run.Method, item.Budget))
                            .Select(g => g.MinBy(item => results[item.Id].Validation.BitsPerByte)!)
                            .SelectMany(best => spec.ConfirmationSeeds.Where(seed => !spec.Seeds.Contains(seed))
                                                    .Select(seed => Item(spec, basis, best.Run, best.Budget, seed)))];
    }

    /// <summary>A run's budgets, ascending; at equal steps (<see cref="SweepSpec.Steps"/>) the one those steps cost.</summary>
    static IEnumerable<double> Budgets(SweepSpec spec, RunConfig basis, SweepRun run)
    {
        if (spec.Steps is not { } steps) return (run.Budgets ?? spec.Budgets).Order();
        var config = RunConfig.Overlay(basis, run.Config, $"sweep '{spec.Name}' run '{run.Name}'");
        return [FlopCounter.Of(config.Model).TrainingFlopsPerStep(config.Train.BatchSize) * steps];
    }

    static RunConfig Basis(SweepSpec spec) => RunConfig.Overlay(Presets.Get(spec.Preset), spec.Base, $"sweep '{spec.Name}' base");

    static SweepItem Item(SweepSpec spec, RunConfig basis, SweepRun run, double budget, long seed)
    {
        var config = RunConfig.Overlay(basis, run.Config, $"sweep '{spec.Name}' run '{run.Name}'");
        config.Model.Validate();
        var flops = FlopCounter.Of(config.Model);
        return new SweepItem($"{run.Name}@{budget.ToString("0.###e0", CultureInfo.InvariantCulture)}#{seed}", run, budget, seed,
                             Settle(spec, config, flops, budget, seed, run.Name), flops);
    }

    /// <summary>
    /// The training settings of a run at a budget: steps = budget / training FLOPs per step (whole steps, the
    /// paper's isoFLOP protocol) or the spec's fixed <see cref="SweepSpec.Steps"/>, warm-up a fixed fraction of them, validations and checkpoints spread evenly.
    /// </summary>
    public static RunConfig Settle(SweepSpec spec, RunConfig config, FlopReport flops, double budget, long seed, string name)
    {
        var train = config.Train;
        var steps = spec.Steps ?? flops.StepsForBudget(budget, train.BatchSize);
        if (steps < spec.Validations)
            throw new PeerSharpException($"sweep '{spec.Name}' run '{name}': a budget of {budget:0.###e0} FLOPs buys {steps} steps, fewer than its {spec.Validations} validations; raise the budget or shrink the model");
        if (steps > int.MaxValue) throw new PeerSharpException($"sweep '{spec.Name}' run '{name}': a budget of {budget:0.###e0} FLOPs buys {steps} steps, more than a run can take");
        int interval = (int)Math.Ceiling((double)steps / spec.Validations);
        return config with
        {
            Train = train with
            {
                Steps = (int)steps,
                Seed = seed,
                WarmupSteps = Math.Min(train.WarmupSteps, (int)Math.Ceiling(spec.WarmupFraction * steps)),
                EvalInterval = interval,
                CheckpointInterval = interval,
            },
        };
    }

    /// <summary>The results already in a file, by id (none if it does not exist; a bad line is an error naming it, <see cref="ResultsFile"/>).</summary>
    public static IReadOnlyDictionary<string, SweepResult> ReadResults(string path) =>
        File.Exists(path) ? ResultsFile.Read(path).ToDictionary(line => line.Result.Id, line => line.Result) : new Dictionary<string, SweepResult>();

    /// <summary>
    /// Runs every item of <paramref name="spec"/> that <paramref name="resultsPath"/> lacks, the grid first and then
    /// its <see cref="Confirmations"/>, appending a line per finished item. An item whose exact settings and data
    /// another experiment's results file in the same folder already holds (another spec's run of the same model at
    /// the same budget and seed) is copied from there, marked <see cref="SweepResult.ReusedFrom"/>, instead of being
    /// trained again. Text paths in the spec are relative to <paramref name="specFolder"/>. Stops after the current
    /// step when cancelled (the run's checkpoint is written; a rerun resumes it). Returns the results of all items.
    /// </summary>
    public static IReadOnlyList<SweepResult> Run(SweepSpec spec, string specFolder, string resultsPath, string runsFolder,
                                                 ISweepObserver? observer = null, CancellationToken cancellation = default)
    {
        var items = Plan(spec);
        var reusable = Reusable(resultsPath);
        var data = spec.Data.Resolved(specFolder);
        var folder = Path.Combine(runsFolder, spec.Name);
        var dataFolder = Path.GetFullPath(specFolder);
        SweepResult? Train(SweepItem item, Action<long> started) =>
            reusable.TryGetValue(ReuseKey(item.Config, spec.Data, dataFolder, FinalEvalTokens(spec, item.Config), item.Seed), out var twin)
                ? Relabel(twin, spec, item)
                : RunItem(spec.Name, item, Path.Combine(folder, item.FolderName), data, FinalEvalTokens(spec, item.Config),
                          started, observer, cancellation) is { } result
                    ? result with { Data = spec.Data, DataFolder = dataFolder, FinalEvalTokens = FinalEvalTokens(spec, item.Config) }
                    : null;

        var results = RunAll(items, resultsPath, observer, cancellation, Train).ToList();
        if (results.Count == items.Count)
        {
            var confirmations = Confirmations(spec, ReadResults(resultsPath));
            results.AddRange(RunAll(confirmations, resultsPath, observer, cancellation, Train, offset: items.Count));
        }
        return results;
    }

    /// <summary>
    /// The sweep loop, shared with <see cref="Lifelong"/>: each item not in the results file is trained by
    /// <paramref name="train"/> (null when cancelled) and its line appended; an item already there is skipped when
    /// it was trained with the same settings. Items are numbered from <paramref name="offset"/> for the observer, out
    /// of offset + their count. Returns the results of the items done, all of them unless cancelled.
    /// </summary>
    internal static IReadOnlyList<SweepResult> RunAll(IReadOnlyList<SweepItem> items, string resultsPath, ISweepObserver? observer,
                                                      CancellationToken cancellation, Func<SweepItem, Action<long>, SweepResult?> train, int offset = 0)
    {
        var done = new Dictionary<string, SweepResult>(ReadResults(resultsPath));
        var results = new List<SweepResult>();
        var count = offset + items.Count;
        for (int j = 0; j < items.Count && !cancellation.IsCancellationRequested; j++)
        {
            var (item, i, next) = (items[j], offset + j, j);
            if (done.TryGetValue(item.Id, out var existing))
            {
                if (JsonSerializer.Serialize(existing.Config, Compact) != JsonSerializer.Serialize(item.Config, Compact))
                    throw new PeerSharpException($"results file '{resultsPath}' holds {item.Id} trained with other settings than the spec now gives; rename the run in the spec, or remove its line to train it again");
                if (existing.ContinuesFrom is { } before && item.ContinuesFrom is { } now && before != now)   // same settings, another start (a phase-3 arm's from)
                    throw new PeerSharpException($"results file '{resultsPath}' holds {item.Id} continued from {before}, but the spec now continues it from {now}; rename the run in the spec, or remove its line to train it again");
                results.Add(existing);
                observer?.RunFinished(i, count, item, existing, skipped: true);
                continue;
            }
            var result = train(item, startStep => observer?.RunStarted(i, count, item, startStep, Remaining(items, next, done.Values)));
            if (result is null) break;   // cancelled: the checkpoint is on disk
            Append(resultsPath, result);
            done[item.Id] = result;
            results.Add(result);
            observer?.RunFinished(i, count, item, result, skipped: false);
        }
        return results;
    }

    /// <summary>Results of the other experiments in the results file's folder that recorded their data, by settings, data and seed.</summary>
    static Dictionary<string, SweepResult> Reusable(string resultsPath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(resultsPath))!;
        var reusable = new Dictionary<string, SweepResult>();
        if (!Directory.Exists(folder)) return reusable;
        foreach (var file in Directory.EnumerateFiles(folder, "*.results.jsonl").Order(StringComparer.Ordinal))
        {
            if (Path.GetFullPath(file) == Path.GetFullPath(resultsPath)) continue;
            foreach (var line in ResultsFile.Read(file))
                if (line.Result is { Data: { } data, FinalEvalTokens: { } testTokens, ReusedFrom: null })
                    reusable.TryAdd(ReuseKey(line.Result.Config, data, line.Result.DataFolder ?? folder, testTokens, line.Result.Seed), line.Result);
        }
        return reusable;
    }

    // Two runs are the same run when their resolved settings (steps and seed included), data and test length are
    // equal: the data are the files the spec's paths name from the spec's folder (a path the same spec text gives in
    // another folder is another file; no path, the bundled books, is the same everywhere).
    static string ReuseKey(RunConfig config, SweepData data, string dataFolder, long testTokens, long seed) =>
        $"{JsonSerializer.Serialize(config, Compact)}|{JsonSerializer.Serialize(data.Resolved(dataFolder), Compact)}|{testTokens}|{seed}";

    static long FinalEvalTokens(SweepSpec spec, RunConfig config) => spec.FinalEvalTokens ?? config.Train.EvalTokens;

    static SweepResult Relabel(SweepResult twin, SweepSpec spec, SweepItem item) => twin with
    {
        Id = item.Id,
        Experiment = spec.Name,
        Run = item.Run.Name,
        Method = item.Run.Method,
        Budget = item.Budget,
        ReusedFrom = $"{twin.Experiment}/{twin.Id}",
    };

    /// <summary>Seconds the rest of the sweep should take at the FLOP rate of the finished runs (of any sweep in the file).</summary>
    static double? Remaining(IReadOnlyList<SweepItem> items, int current, IEnumerable<SweepResult> finished)
    {
        var list = finished.Where(r => r.WallSeconds > 0).ToList();
        if (list.Count == 0) return null;
        double rate = list.Sum(r => r.TrainingFlops) / list.Sum(r => r.WallSeconds);
        var finishedIds = list.Select(r => r.Id).ToHashSet();
        return items.Skip(current).Where(item => !finishedIds.Contains(item.Id)).Sum(item => item.TrainingFlops) / rate;
    }

    /// <summary>
    /// Trains one item in <paramref name="folder"/> (from scratch, from <see cref="SweepItem.StartFrom"/>, or resumed
    /// from the folder's own checkpoint) on <paramref name="data"/> (full paths) and returns its results line; null
    /// when cancelled.
    /// </summary>
    internal static SweepResult? RunItem(string experiment, SweepItem item, string folder, SweepData data,
                                         long? finalEvalTokens, Action<long> started, ISweepObserver? observer, CancellationToken cancellation)
    {
        var checkpoint = Checkpoint.PathInFolder(folder);
        var resume = File.Exists(Checkpoint.SidecarPath(checkpoint));
        using var run = TrainingRun.Open(new TrainingRunOptions
        {
            Config = item.Config,
            Folder = folder,
            DataPath = data.Train,
            ValidationPath = data.Validation,
            ResumeFrom = resume ? checkpoint : item.StartFrom,
            ReplayPath = item.ReplayFrom,
            AnchorPath = item.AnchorFrom,
            Overwrite = !resume,   // a folder without a checkpoint holds nothing worth keeping
        });
        var also = item.AlsoScored.Select(t => (t.Name, Corpus: TokenCorpus.Open(t.Path ?? BundledCorpus.ValidationPath, item.Config.Model.Tokenizer))).ToList();
        try
        {
            return Train(experiment, item, run, folder, resume, also, data, finalEvalTokens, started, observer, cancellation);
        }
        finally
        {
            foreach (var (_, corpus) in also) corpus.Dispose();
        }
    }

    static SweepResult? Train(string experiment, SweepItem item, TrainingRun run, string folder, bool resumed, List<(string Name, TokenCorpus Corpus)> also,
                              SweepData data, long? finalEvalTokens, Action<long> started, ISweepObserver? observer, CancellationToken cancellation)
    {
        var progress = RunProgress.Open(folder, resumed ? run.StartStep : 0);
        var train = item.Config.Train;
        var tokensPerStep = (long)train.BatchSize * item.Config.Model.ContextLength;
        void ScoreAt(long step, EvaluationResult validation)
        {
            progress.AddPoint(new CurvePoint(step, step * tokensPerStep, validation.BitsPerByte, validation.Layers));
            foreach (var (name, corpus) in also)
            {
                var other = Evaluator.Evaluate(run.Model, corpus, train.BatchSize, train.EvalTokens);
                progress.AddPoint(new CurvePoint(step, step * tokensPerStep, other.BitsPerByte, other.Layers, name));
            }
        }
        // A run continued from another's checkpoint is scored where it starts, so its curves show the change.
        if (!resumed && run.StartStep > 0) ScoreAt(run.StartStep, Evaluator.Evaluate(run.Model, run.ValidationCorpus, train.BatchSize, train.EvalTokens));
        double secondsThisRun = 0;
        run.Trainer.StepCompleted += step =>
        {
            secondsThisRun = (step.Step - run.StartStep) * tokensPerStep / Math.Max(1e-9, step.TokensPerSecond);
            observer?.StepCompleted(item, step);
        };
        run.Trainer.Evaluated += ScoreAt;
        run.Trainer.CheckpointSaved += _ => progress.SaveSeconds(secondsThisRun);
        started(run.StartStep);

        var trained = run.Run(cancellation);
        progress.SaveSeconds(secondsThisRun);
        if (!trained.Completed) return null;

        var batch = train.BatchSize;
        Score validation;
        IReadOnlyList<PartScore>? validationParts = null, testParts = null;
        if (data.ValidationParts is { } vParts) (validation, validationParts) = ScoreParts(run.Model, vParts, item.Config.Model.Tokenizer, batch, train.EvalTokens);
        else validation = Score.Of(trained.Validation ?? Evaluator.Evaluate(run.Model, run.ValidationCorpus, batch, train.EvalTokens));
        Score? test = null;
        var testTokens = finalEvalTokens ?? train.EvalTokens;
        if (data.TestParts is { } tParts) (test, testParts) = ScoreParts(run.Model, tParts, item.Config.Model.Tokenizer, batch, testTokens);
        else if (data.Test is not null) test = ScoreText(run.Model, data.Test, item.Config.Model.Tokenizer, batch, testTokens);
        IReadOnlyList<PartScore>? outOfDomain = data.OutOfDomain?.Select(text =>
            new PartScore(text.Name, ScoreText(run.Model, text.Path, item.Config.Model.Tokenizer, batch, testTokens))).ToList();
        var wall = progress.TotalSeconds;
        return new SweepResult
        {
            Id = item.Id,
            Experiment = experiment,
            Run = item.Run.Name,
            Method = item.Run.Method,
            Budget = item.Budget,
            Seed = item.Seed,
            Config = item.Config,
            Parameters = item.Flops.Parameters,
            ActiveParameters = item.Flops.ActiveParameters,
            ForwardFlopsPerToken = item.Flops.ForwardFlopsPerToken,
            FlopsByPart = [.. item.Flops.Lines.Select(l => new FlopPart(l.Part, l.Flops))],
            Steps = train.Steps - item.StartStep,
            Tokens = (train.Steps - item.StartStep) * tokensPerStep,
            TrainingFlops = item.TrainingFlops,
            WallSeconds = wall,
            CpuSeconds = progress.TotalCpuSeconds,
            TokensPerSecond = (train.Steps - item.StartStep) * tokensPerStep / Math.Max(1e-9, wall),
            Validation = validation,
            Test = test,
            ValidationParts = validationParts,
            TestParts = testParts,
            OutOfDomain = outOfDomain,
            Curve = progress.Points,
            FinishedAt = DateTime.UtcNow,
            Machine = MachineInfo.Current().Numerics,
        };
    }

    /// <summary>One text file scored up to <paramref name="maxTokens"/> tokens: a test split, or an out-of-domain text.</summary>
    static Score ScoreText(TransformerLM model, string path, TokenizerKind tokenizer, int batchSize, long maxTokens)
    {
        using var corpus = TokenCorpus.Open(path, tokenizer);
        return Score.Of(Evaluator.Evaluate(model, corpus, batchSize, maxTokens));
    }

    /// <summary>Each part scored up to <paramref name="maxTokens"/> tokens, and all of them together (<see cref="Evaluator.EvaluateParts"/>).</summary>
    static (Score Together, IReadOnlyList<PartScore> Parts) ScoreParts(TransformerLM model, TextPart[] parts, TokenizerKind tokenizer, int batchSize, long maxTokens)
    {
        var corpora = parts.Select(p => (p.Name, Corpus: TokenCorpus.Open(p.Path, tokenizer))).ToList();
        try
        {
            var scored = Evaluator.EvaluateParts(model, corpora, batchSize, maxTokens);
            return (Score.Of(scored.Together), [.. scored.Parts.Select(p => new PartScore(p.Name, Score.Of(p.Result)))]);
        }
        finally
        {
            foreach (var (_, corpus) in corpora) corpus.Dispose();
        }
    }

    internal static readonly JsonSerializerOptions Compact = new(RunConfig.Json) { WriteIndented = false };

    /// <summary>Appends one result line and flushes it to disk, so a finished run is never lost.</summary>
    static void Append(string path, SweepResult result) => AppendLine(path, JsonSerializer.Serialize(result, Compact));

    /// <summary>Appends one line to a JSON-lines file (created with its folder if need be) and flushes it to disk.</summary>
    internal static void AppendLine(string path, string line)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        using (var writer = new StreamWriter(stream, leaveOpen: true)) writer.WriteLine(line);
        stream.Flush(flushToDisk: true);
    }
}
