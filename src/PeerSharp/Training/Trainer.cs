using TorchSharp;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Distributed;
using PeerSharp.Evaluation;
using PeerSharp.ExpertParallel;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>What one finished optimizer step reports.</summary>
/// <param name="Step">1-based count of steps done.</param>
/// <param name="TotalSteps">Steps in the whole run.</param>
/// <param name="Loss">Training loss of the step's batch, nats per token.</param>
/// <param name="LearningRate">Learning rate used.</param>
/// <param name="GradientNorm">Global gradient norm before clipping.</param>
/// <param name="TokensPerSecond">Training throughput since the run (or resume) started, validation excluded.</param>
/// <param name="TokensSeen">Training tokens seen since step 0.</param>
public sealed record StepReport(long Step, int TotalSteps, double Loss, double LearningRate, double GradientNorm, double TokensPerSecond, long TokensSeen);

/// <summary>How a <see cref="Trainer.Run"/> ended.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="Completed">False when it was cancelled before the last step (a checkpoint was still written).</param>
/// <param name="Validation">Last validation result, if any.</param>
/// <param name="CheckpointPath">The sidecar of the last checkpoint written.</param>
/// <param name="TokensPerSecond">Training throughput of this invocation, validation and checkpoints excluded.</param>
public sealed record TrainResult(long Step, bool Completed, EvaluationResult? Validation, string? CheckpointPath, double TokensPerSecond);

/// <summary>
/// The training loop: AdamW with warm-up and cosine decay, gradient clipping, one dispose scope per step
/// (so native memory stays flat), validation at intervals, TensorBoard scalars and atomic checkpoints.
/// The batch of step s depends only on (seed, s), so a resumed run sees exactly the data it would have.
/// <para>
/// Data parallel over P ranks (<see cref="Replicas"/>, DESIGN.md "Distributed training"): the configured batch is
/// the global batch; rank r trains on its rows [r·B/P, (r+1)·B/P), the gradients are averaged over the ranks
/// between the backward and the clipping (<see cref="GradientExchange"/>), and every rank applies the same update,
/// so P ranks train the model one process trains on the whole batch. Rank 0 alone writes checkpoints, metrics
/// and TensorBoard; the parameters are compared across ranks at every validation and checkpoint.
/// </para>
/// </summary>
public sealed class Trainer
{
    readonly RunConfig _config;
    readonly TransformerLM _model;
    readonly IOptimizer _optimizer;
    readonly TokenCorpus _train;
    readonly TokenCorpus? _validation;
    readonly string _checkpointPath;
    readonly string? _tensorBoardFolder;

    /// <summary>A trainer writing its checkpoints to <paramref name="checkpointPath"/> (NAME → NAME.safetensors, NAME.json…).</summary>
    public Trainer(RunConfig config, TransformerLM model, IOptimizer optimizer, TokenCorpus train, TokenCorpus? validation,
                   string checkpointPath, string? tensorBoardFolder = null)
    {
        config.Validate();
        if (train.TokenizerName != EnumNames.Name(config.Model.Tokenizer))
            throw new PeerSharpException($"training data was tokenized with '{train.TokenizerName}' but the model expects '{EnumNames.Name(config.Model.Tokenizer)}'");
        OptimizerFactory.RefuseMappedTables(model);
        (_config, _model, _optimizer, _train, _validation) = (config, model, optimizer, train, validation);
        (_checkpointPath, _tensorBoardFolder) = (checkpointPath, tensorBoardFolder);
    }

    /// <summary>When set, every step and validation is appended to it.</summary>
    public MetricsLog? Metrics { get; init; }

    /// <summary>The ranks of a data-parallel run; one process by default.</summary>
    public ICommunicator Replicas { get; init; } = SingleProcess.Instance;

    /// <summary>
    /// Expert parallelism's sharded tables (<see cref="TrainConfig.ExpertParallel"/>); null: every rank holds whole
    /// tables. Their gradients are complete on their owners and skip the exchange; checkpoints gather them to rank 0.
    /// </summary>
    public ExpertParallelism? Sharding { get; init; }

    /// <summary>
    /// The replay text of <see cref="TrainConfig.ReplayFraction"/> (an earlier domain; only its first
    /// <see cref="TrainConfig.ReplayTokens"/> are replayed), owned by the caller; null: no replay.
    /// </summary>
    public TokenCorpus? Replay { get; init; }

    /// <summary>The weights (by parameter name) <see cref="TrainConfig.AnchorPull"/> pulls toward, owned by the caller; null: none.</summary>
    public IReadOnlyDictionary<string, Tensor>? Anchor { get; init; }

    /// <summary>Bytes this rank sent to the others per training step in expert parallelism's exchanges (mean over this run's steps; 0 without).</summary>
    public double ExpertParallelBytesPerStep { get; private set; }

    /// <summary>Checksum of the parameters, equal on every rank, at the last comparison (0 before the first).</summary>
    public ulong ParameterChecksum { get; private set; }

    /// <summary>Raised after every step.</summary>
    public event Action<StepReport>? StepCompleted;

    /// <summary>Raised after every validation, with the step it followed.</summary>
    public event Action<long, EvaluationResult>? Evaluated;

    /// <summary>Raised after every checkpoint, with its sidecar path.</summary>
    public event Action<string>? CheckpointSaved;

    /// <summary>Raised while validating, with the fraction done.</summary>
    public event Action<double>? EvaluationProgress;

    /// <summary>
    /// Trains from <paramref name="startStep"/> to the configured number of steps. On cancellation it stops
    /// after the current step and writes a checkpoint, so nothing is lost.
    /// </summary>
    public TrainResult Run(long startStep = 0, long tokensSeen = 0, CancellationToken cancellation = default)
    {
        var train = _config.Train;
        int ranks = Replicas.Size, rank = Replicas.Rank;
        int rowsPerRank = RowsPerRank(train, Replicas);
        var schedule = new LearningRateSchedule(train.LearningRate, train.WarmupSteps, train.Steps, train.MinLearningRateRatio);
        var batches = TrainingBatches.Create(train, _config.Model.ContextLength, _train, Replay);
        var tokensPerStep = (long)train.BatchSize * _config.Model.ContextLength;
        var tensorBoard = _tensorBoardFolder is null || rank != 0 ? null : TorchSharp.torch.utils.tensorboard.SummaryWriter(_tensorBoardFolder);
        EvaluationResult? validation = null;
        string? checkpoint = null;
        using var trainStep = new TrainStep(_model, _optimizer, train, Replicas, Sharding, Anchor);
        var clock = new System.Diagnostics.Stopwatch();   // optimizer steps only, not validation or checkpoints
        long step = startStep, stepsThisRun = 0;
        _model.train();
        var folder = new RunFolderWatch(Path.GetDirectoryName(Path.GetFullPath(_checkpointPath))!, watched: rank == 0);

        try
        {
            while (step < train.Steps && !StopRequested(cancellation))
            {
                var learningRate = schedule.At(step);
                clock.Start();
                Sharding?.ResetTraffic();
                var (loss, gradientNorm) = trainStep.Run(step, learningRate, () =>
                {
                    var (input, target) = batches(step);                        // (B, T) each, the global batch
                    if (ranks > 1)
                        (input, target) = (input.narrow(0, rank * rowsPerRank, rowsPerRank), target.narrow(0, rank * rowsPerRank, rowsPerRank));   // (B/P, T)
                    return _model.Loss(input, target);
                });
                clock.Stop();
                step++;
                stepsThisRun++;
                folder.Check(step);
                if (Sharding is not null) ExpertParallelBytesPerStep += (Sharding.BytesSent - ExpertParallelBytesPerStep) / stepsThisRun;
                tokensSeen += tokensPerStep;
                var tokensPerSecond = stepsThisRun * tokensPerStep / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                StepCompleted?.Invoke(new StepReport(step, train.Steps, loss, learningRate, gradientNorm, tokensPerSecond, tokensSeen));
                Metrics?.Append(new MetricsRecord { Step = step, Loss = loss, LearningRate = learningRate });
                tensorBoard?.add_scalar("train/loss", (float)loss, (int)step);
                tensorBoard?.add_scalar("train/learning_rate", (float)learningRate, (int)step);
                tensorBoard?.add_scalar("train/gradient_norm", (float)gradientNorm, (int)step);

                var last = step == train.Steps;
                if (_validation is not null && (step % train.EvalInterval == 0 || last))
                {
                    validation = Evaluator.Evaluate(_model, _validation, train.BatchSize, train.EvalTokens,
                        EvaluationProgress is null ? null : new Progress<double>(f => EvaluationProgress(f)), Replicas);
                    Evaluated?.Invoke(step, validation);
                    Metrics?.Append(new MetricsRecord { Step = step, ValidationLoss = validation.Loss, BitsPerByte = validation.BitsPerByte });
                    tensorBoard?.add_scalar("validation/loss", (float)validation.Loss, (int)step);
                    tensorBoard?.add_scalar("validation/bits_per_byte", (float)validation.BitsPerByte, (int)step);
                    foreach (var layer in validation.Layers)
                    {
                        tensorBoard?.add_scalar($"experts/block{layer.Block}/usage", (float)layer.Usage, (int)step);
                        tensorBoard?.add_scalar($"experts/block{layer.Block}/unevenness", (float)layer.Unevenness, (int)step);
                    }
                }
                if (last || (train.CheckpointInterval > 0 && step % train.CheckpointInterval == 0))
                {
                    folder.Check(step);   // validation took a while
                    checkpoint = SaveCheckpoint(step, tokensSeen, validation);
                }
                else if (ranks > 1 && step % train.EvalInterval == 0)
                    VerifyReplicas(step);
            }
        }
        catch (DirectoryNotFoundException e) when (folder.Watched)
        {
            throw folder.GoneError(step, e.Message);   // deleted between the check and a write, or being deleted (tensorboard/ first)
        }

        folder.Check(step);
        var completed = step >= train.Steps;
        if (!completed) checkpoint = SaveCheckpoint(step, tokensSeen, validation);
        var throughput = stepsThisRun * tokensPerStep / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
        return new TrainResult(step, completed, validation, checkpoint, throughput);
    }

    /// <summary>
    /// The run folder, where it existed when training started: deleted while the run trains (a cleanup, a user), the
    /// run stops with one line instead of failing in the TensorBoard writer or recreating a folder that would hold
    /// only a checkpoint and no config or metrics.
    /// </summary>
    sealed class RunFolderWatch(string path, bool watched)
    {
        /// <summary>Whether the folder is watched: it existed when training started (on the rank that writes it).</summary>
        public bool Watched { get; } = watched && Directory.Exists(path);

        public void Check(long step)
        {
            if (Watched && !Directory.Exists(path)) throw GoneError(step);
        }

        public PeerSharpException GoneError(long step, string? detail = null) =>
            new($"run folder '{path}' was deleted while training, after step {step}{(detail is null ? "" : $" ({detail})")}; stopped without writing to it again; expected the folder to stay until the run ends");
    }

    /// <summary>Sequences of each global batch that one of the ranks trains on: the batch size / P, which must be whole.</summary>
    public static int RowsPerRank(TrainConfig train, ICommunicator replicas) => train.BatchSize % replicas.Size == 0
        ? train.BatchSize / replicas.Size
        : throw new PeerSharpException($"a batch of {train.BatchSize} sequences cannot be split evenly over {replicas.Size} ranks; expected a batch size that is a multiple of {replicas.Size}");

    /// <summary>Whether any rank was asked to stop: all ranks stop after the same step.</summary>
    bool StopRequested(CancellationToken cancellation)
    {
        Span<long> requested = [cancellation.IsCancellationRequested ? 1 : 0];
        Replicas.AllReduceSum(requested);
        return requested[0] > 0;
    }

    /// <summary>Stops the run (on every rank) unless every rank holds the same parameters and buffers.</summary>
    void VerifyReplicas(long step) =>
        ParameterChecksum = ReplicaCheck.Verify(Replicas, _model.state_dict().Where(e => Sharding?.Holds(e.Value) != true), step);   // shards differ by design

    /// <summary>Rank 0 writes the checkpoint, after the ranks were found identical; the others write nothing.</summary>
    string? SaveCheckpoint(long step, long tokensSeen, EvaluationResult? validation)
    {
        if (Replicas.Size > 1) VerifyReplicas(step);
        if (Sharding is not null) return Sharding.WithWholeTables(() => Save(step, tokensSeen, validation));   // rank 0 writes whole tables
        return Replicas.Rank == 0 ? Save(step, tokensSeen, validation) : null;
    }

    string Save(long step, long tokensSeen, EvaluationResult? validation)
    {
        var info = new Checkpoint { Config = _config, Step = step, TokensSeen = tokensSeen, ValidationLoss = validation?.Loss };
        var path = Checkpoint.Save(_checkpointPath, _model, _optimizer, info);
        CheckpointSaved?.Invoke(path);
        return path;
    }
}
