using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Distributed;
using PeerSharp.ExpertParallel;
using PeerSharp.Model;
using PeerSharp.Optimizers;

namespace PeerSharp.Training;

/// <summary>What a <see cref="TrainingRun"/> trains, on what, and where it writes.</summary>
public sealed record TrainingRunOptions
{
    /// <summary>The run's resolved settings (for a resumed run: the checkpoint's model with these training settings).</summary>
    public required RunConfig Config { get; init; }

    /// <summary>The run folder; null when resuming: the checkpoint's own folder.</summary>
    public string? Folder { get; init; }

    /// <summary>Training text (<see cref="TextSource.Open"/>); null: the bundled training books.</summary>
    public string? DataPath { get; init; }

    /// <summary>Held-out text; null: the bundled validation book without <see cref="DataPath"/>, else the last 1% of the data.</summary>
    public string? ValidationPath { get; init; }

    /// <summary>A checkpoint to continue from; null: a fresh run.</summary>
    public string? ResumeFrom { get; init; }

    /// <summary>
    /// Refuse a <see cref="ResumeFrom"/> checkpoint that already reaches the configured steps, which would train nothing
    /// (`peer train --resume`); without, such a run opens, to be scored (a sweep whose last result was not yet written).
    /// A checkpoint past the steps is refused either way.
    /// </summary>
    public bool RequireStepsLeft { get; init; }

    /// <summary>The replay text of <see cref="TrainConfig.ReplayFraction"/> (an earlier domain's training text); needed exactly when that fraction is above 0.</summary>
    public string? ReplayPath { get; init; }

    /// <summary>The checkpoint whose weights <see cref="TrainConfig.AnchorPull"/> pulls toward (where an earlier phase ended); needed exactly when the pull is on.</summary>
    public string? AnchorPath { get; init; }

    /// <summary>Start a fresh run even in a folder that already holds one (its checkpoint and logs are replaced).</summary>
    public bool Overwrite { get; init; }

    /// <summary>
    /// The ranks of a data-parallel run (one process by default). Rank 0 opens the folder and the checkpoint as a
    /// single process does; the other ranks touch no file of the run and receive rank 0's state.
    /// </summary>
    public ICommunicator Replicas { get; init; } = SingleProcess.Instance;
}

/// <summary>
/// One training run in its folder, as `peer train` runs it: FOLDER/config.json (the resolved settings, to repeat
/// the run), checkpoint.json with its tensor files, metrics.jsonl, tensorboard/ and curves.png.
/// <see cref="Open"/> checks every input first (settings, data, validation text, the checkpoint to resume) and
/// only then takes the folder: a run that cannot start leaves the folder as it was. While open, the folder is
/// locked against a second run.
/// <para>
/// In a data-parallel run (<see cref="TrainingRunOptions.Replicas"/>) only rank 0 does all that; every other rank
/// builds the same model without a folder, then all ranks take rank 0's parameters, optimizer state and step
/// (DESIGN.md "Distributed training"), so a checkpoint of any number of ranks resumes on any other.
/// </para>
/// </summary>
public sealed class TrainingRun : IDisposable
{
    /// <summary>Without held-out text, this fraction of the training tokens (at least 8 windows) validates.</summary>
    public const double HeldOutFraction = 0.01;

    readonly RunFolderLock? _lock;
    readonly MetricsLog? _metrics;
    readonly TokenCorpus _corpus;
    readonly TokenCorpus? _heldOutCorpus;
    readonly ExpertParallelism? _sharding;
    readonly TokenCorpus? _replay;
    readonly TransformerLM? _anchor;

    TrainingRun(string folder, RunConfig config, TransformerLM model, IOptimizer optimizer,
                long startStep, long tokensSeen, TokenCorpus corpus, TokenCorpus? heldOutCorpus, string? resumedFolder, ICommunicator replicas, ExpertParallelism? sharding,
                TokenCorpus? replay, TransformerLM? anchor, IReadOnlyDictionary<string, TorchSharp.torch.Tensor>? anchorWeights)
    {
        (Folder, Config, Model, Optimizer, StartStep, TokensSeen, _sharding) = (folder, config, model, optimizer, startStep, tokensSeen, sharding);
        (_corpus, _heldOutCorpus, _replay, _anchor) = (corpus, heldOutCorpus, replay, anchor);
        ValidationHeldOutFromData = heldOutCorpus is null;
        (TrainCorpus, ValidationCorpus) = heldOutCorpus is null
            ? corpus.HoldOut(HeldOutFraction, 8L * (config.Model.ContextLength + 1))
            : (corpus, heldOutCorpus);
        TokenWindows.Validate(TrainCorpus, config.Train.BatchSize, config.Model.ContextLength);
        TokenWindows.Validate(ValidationCorpus, 1, config.Model.ContextLength, "validation text");
        if (replicas.Rank != 0)
        {
            Trainer = new Trainer(config, model, optimizer, TrainCorpus, ValidationCorpus, Checkpoint.PathInFolder(folder))
            {
                Replicas = replicas, Sharding = sharding, Replay = replay, Anchor = anchorWeights,
            };
            return;
        }

        // Every input is good: only now is the folder touched. If it cannot be written after all (a full disk),
        // a folder this run created is removed again.
        var created = !Directory.Exists(folder);
        try
        {
            _lock = RunFolderLock.Acquire(folder);
            File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
            if (resumedFolder is not null && !SameFolder(resumedFolder, folder))
                StartMetricsFrom(Path.Combine(resumedFolder, "metrics.jsonl"), MetricsPath);
            _metrics = new MetricsLog(MetricsPath, keepThroughStep: startStep);
            Trainer = new Trainer(config, model, optimizer, TrainCorpus, ValidationCorpus, Checkpoint.PathInFolder(folder), Path.Combine(folder, "tensorboard"))
            {
                Metrics = _metrics,
                Replicas = replicas,
                Sharding = sharding,
                Replay = replay,
                Anchor = anchorWeights,
            };
        }
        catch
        {
            _metrics?.Dispose();
            _lock?.Dispose();
            if (created) TryDelete(folder);
            throw;
        }
    }

    /// <summary>Opens a run: a fresh model or one resumed from its checkpoint, with its data and folder.</summary>
    public static TrainingRun Open(TrainingRunOptions options)
    {
        var config = options.Config;
        var replicas = options.Replicas;
        config.Validate();
        config.Model.CheckFitsInMemory(training: true);
        Trainer.RowsPerRank(config.Train, replicas);
        if (config.Train.ExpertParallel) ExpertParallelism.Check(config, replicas);
        var root = replicas.Rank == 0;
        var resumedFolder = options.ResumeFrom is { } from && root ? Path.GetDirectoryName(Path.GetFullPath(Checkpoint.SidecarPath(from)))! : null;
        var folder = options.Folder ?? resumedFolder ?? (root ? null : "")
            ?? throw new PeerSharpException("a training run needs a folder (--out) unless it resumes a checkpoint");
        if (root) CheckFolder(folder, resumedFolder, options.Overwrite);

        var tokenizer = config.Model.Tokenizer;
        var validationPath = options.ValidationPath ?? (options.DataPath is null ? BundledCorpus.ValidationPath : null);
        if ((config.Train.ReplayFraction > 0) != (options.ReplayPath is not null))
            throw new PeerSharpException(options.ReplayPath is null
                ? $"replay fraction {config.Train.ReplayFraction} needs a replay text (an earlier domain's training text, --replay); none was given"
                : $"a replay text ('{options.ReplayPath}') was given but the replay fraction is 0; expected a fraction above 0 or no replay text");
        if ((config.Train.AnchorPull > 0) != (options.AnchorPath is not null))
            throw new PeerSharpException(options.AnchorPath is null
                ? $"anchor pull {config.Train.AnchorPull} needs anchor weights (the checkpoint an earlier phase ended with, --anchor); none was given"
                : $"anchor weights ('{options.AnchorPath}') were given but the anchor pull is 0; expected a pull above 0 or no anchor");
        TokenCorpus? corpus = null, heldOut = null, replay = null;
        TransformerLM? model = null, anchor = null;
        IOptimizer? optimizer = null;
        ExpertParallelism? sharding = null;
        try
        {
            corpus = TokenCorpus.Open(options.DataPath ?? BundledCorpus.TrainPath, tokenizer);
            heldOut = validationPath is null ? null : TokenCorpus.Open(validationPath, tokenizer);
            replay = options.ReplayPath is null ? null : TokenCorpus.Open(options.ReplayPath, tokenizer);
            if (options.AnchorPath is { } anchorPath) (anchor, _) = Checkpoint.LoadModel(anchorPath);
            long startStep = 0, tokensSeen = 0;
            if (options.ResumeFrom is { } checkpoint && root)
            {
                (model, optimizer, var info) = TrainingSetup.Resume(checkpoint, config);
                (startStep, tokensSeen) = (info.Step, info.TokensSeen);
                if (startStep > config.Train.Steps || (options.RequireStepsLeft && startStep == config.Train.Steps))
                    throw new PeerSharpException($"checkpoint '{Checkpoint.SidecarPath(checkpoint)}' is at step {startStep}, which already reaches the {config.Train.Steps} steps to train; expected more steps (--steps above {startStep}) to train on");
            }
            else
                (model, optimizer) = TrainingSetup.Create(config);
            var anchorWeights = anchor?.named_parameters().ToDictionary(p => p.name, p => (TorchSharp.torch.Tensor)p.parameter);
            if (anchorWeights is not null) AnchorPull.Create(model, anchorWeights, config.Train.AnchorPull);   // the anchor fits the model, checked before the folder is taken
            (startStep, tokensSeen) = TakeRootState(replicas, model, optimizer, startStep, tokensSeen);
            if (config.Train.ExpertParallel) sharding = ExpertParallelism.Apply(model, optimizer, replicas);   // each rank keeps its rows
            return new TrainingRun(folder, config, model, optimizer, startStep, tokensSeen, corpus, heldOut, resumedFolder, replicas, sharding, replay, anchor, anchorWeights);
        }
        catch
        {
            anchor?.Dispose();
            replay?.Dispose();
            sharding?.Dispose();
            optimizer?.Dispose();
            model?.Dispose();
            heldOut?.Dispose();
            corpus?.Dispose();
            throw;
        }
    }

    /// <summary>Every rank takes rank 0's parameters, buffers, optimizer state and step (a no-op for one rank).</summary>
    static (long StartStep, long TokensSeen) TakeRootState(ICommunicator replicas, TransformerLM model, IOptimizer optimizer, long startStep, long tokensSeen)
    {
        if (replicas.Size == 1) return (startStep, tokensSeen);
        var tensors = new Dictionary<IntPtr, KeyValuePair<string, TorchSharp.torch.Tensor>>();   // each tensor once, not its aliases
        foreach (var entry in model.state_dict().OrderBy(e => e.Key, StringComparer.Ordinal)) tensors.TryAdd(entry.Value.Handle, entry);
        replicas.Broadcast(tensors.Values);
        var state = optimizer.StateDict();
        replicas.Broadcast(state);
        optimizer.LoadStateDict(state);
        var steps = replicas.Broadcast(new[] { startStep, tokensSeen });
        return (steps[0], steps[1]);
    }

    /// <summary>The run folder (on a rank other than 0 of a data-parallel run: the folder given, never touched; or empty).</summary>
    public string Folder { get; }

    /// <summary>The run's settings.</summary>
    public RunConfig Config { get; }

    /// <summary>The model being trained.</summary>
    public TransformerLM Model { get; }

    /// <summary>Its optimizer.</summary>
    public IOptimizer Optimizer { get; }

    /// <summary>The step training starts at (0, or the resumed checkpoint's).</summary>
    public long StartStep { get; }

    /// <summary>Training tokens seen before <see cref="StartStep"/>.</summary>
    public long TokensSeen { get; }

    /// <summary>The training tokens.</summary>
    public TokenCorpus TrainCorpus { get; }

    /// <summary>The validation tokens.</summary>
    public TokenCorpus ValidationCorpus { get; }

    /// <summary>Whether the validation tokens are the held-out end of the training data (no validation text was given).</summary>
    public bool ValidationHeldOutFromData { get; }

    /// <summary>Expert parallelism's sharded tables (<see cref="TrainConfig.ExpertParallel"/>), null otherwise.</summary>
    public ExpertParallelism? Sharding => _sharding;

    /// <summary>The training loop, for its events (progress, validations, checkpoints).</summary>
    public Trainer Trainer { get; }

    /// <summary>FOLDER/metrics.jsonl.</summary>
    public string MetricsPath => Path.Combine(Folder, "metrics.jsonl");

    /// <summary>FOLDER/curves.png.</summary>
    public string CurvesPath => Path.Combine(Folder, "curves.png");

    /// <summary>
    /// Trains to the configured number of steps (or until cancelled, after writing a checkpoint), then draws the
    /// curves of the whole run, also when training stopped with an error. With expert parallelism, rank 0's model
    /// then holds the whole tables again (gathered from the ranks), the trained model.
    /// </summary>
    public TrainResult Run(CancellationToken cancellation = default)
    {
        try
        {
            var result = Trainer.Run(StartStep, TokensSeen, cancellation);
            _sharding?.GatherToRoot();
            return result;
        }
        finally
        {
            if (_metrics is not null) DrawCurves();
        }
    }

    void DrawCurves()
    {
        if (!Directory.Exists(Folder)) return;   // deleted while training: the trainer says so
        var m = Config.Model;
        TrainingCurves.Save(MetricsLog.Read(MetricsPath),
            $"{Path.GetFileName(Path.GetFullPath(Folder))}: {m.LayerCount} blocks, d_model {m.ModelDim}, {string.Join(" ", m.FeedForwardKinds().Select(EnumNames.Name))}",
            CurvesPath);
    }

    /// <summary>
    /// Refuses a folder that is a file, or that holds another run when it may not be replaced: a fresh run's folder,
    /// or the folder a resumed run continues in when it is not the checkpoint's own.
    /// </summary>
    static void CheckFolder(string folder, string? resumedFolder, bool overwrite)
    {
        if (File.Exists(folder)) throw new PeerSharpException($"run folder '{folder}' is a file; expected a folder (or a path that does not exist yet)");
        if (overwrite || (resumedFolder is not null && SameFolder(resumedFolder, folder))) return;
        if (File.Exists(Checkpoint.SidecarPath(Checkpoint.PathInFolder(folder))) || File.Exists(Path.Combine(folder, "metrics.jsonl")))
            throw new PeerSharpException(resumedFolder is null
                ? $"run folder '{folder}' already holds a run; continue it with --resume, replace it with --force, or choose another --out"
                : $"run folder '{folder}' already holds another run than the checkpoint in '{resumedFolder}'; resume in the checkpoint's folder (leave out --out), replace that run with --force, or choose another --out");
    }

    static bool SameFolder(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)), StringComparison.Ordinal);

    /// <summary>A run resumed into another folder continues the checkpoint's metrics there, not whatever that folder held.</summary>
    static void StartMetricsFrom(string source, string destination)
    {
        if (File.Exists(source)) File.Copy(source, destination, overwrite: true);
        else File.Delete(destination);
    }

    static void TryDelete(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left as it is: the error that got here is the one to report.
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _metrics?.Dispose();
        _sharding?.Dispose();
        Optimizer.Dispose();
        Model.Dispose();
        _anchor?.Dispose();
        _replay?.Dispose();
        _heldOutCorpus?.Dispose();
        _corpus.Dispose();
        _lock?.Dispose();
    }
}
