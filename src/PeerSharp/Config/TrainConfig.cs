namespace PeerSharp.Config;

/// <summary>How a model is trained. Serialised as JSON in config files and checkpoint sidecars.</summary>
public sealed record TrainConfig
{
    /// <summary>Optimizer steps in the whole run.</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Sequences per step.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Peak learning rate, reached after warm-up.</summary>
    public double LearningRate { get; init; } = 3e-3;

    /// <summary>
    /// Fixed learning rate of PEER's expert tables (down.weight, up.weight), held at every step without warm-up
    /// or decay, as memory layers are usually trained (often higher than the rest); null: the tables follow
    /// the schedule of <see cref="LearningRate"/> like every other parameter.
    /// </summary>
    public double? ExpertLearningRate { get; init; }

    /// <summary>
    /// Multiplier on the scheduled learning rate of the product keys of PEER and PKM layers (their own AdamW part,
    /// without weight decay); null: the keys follow the schedule like every other parameter. 0.1 slowed the
    /// collapse of retrieval onto few experts in a small byte-level model (experiments/usage/FINDINGS.md).
    /// </summary>
    public double? KeyLearningRateScale { get; init; }

    /// <summary>Parameters and expert rows left untouched by this run (after growth, say); nothing by default.</summary>
    public FreezeConfig Freeze { get; init; } = new();

    /// <summary>
    /// What the optimizer of the expert tables keeps per row: a second moment per row and no first moment (the
    /// default, chosen by measurement: as good as full AdamW or better at N = 128² and 1024², for 1/d of the state),
    /// full AdamW moments, or a second moment per row with a full or bf16 first moment (docs/SPARSE_UPDATES.md, "Lean
    /// table state"). Applies where the tables get row-sparse gradients (the fused kernel, PKM); with dense table
    /// gradients the tables use AdamW. Runs recorded before this default (checkpoints, results) without the field
    /// were full (<see cref="RunConfig.UpgradeRecord"/>).
    /// </summary>
    public TableOptimizerState TableState { get; init; } = TableOptimizerState.RowWiseNoMomentum;

    /// <summary>
    /// Expert parallelism under mpirun (docs/DISTRIBUTED.md): the rows of every PEER table and their optimizer state
    /// are sharded over the P ranks by id mod P, each token's expert requests go to the rows' owners and come back;
    /// everything else stays data parallel. Needs P ≥ 2 ranks and the fused PEER kernel. Like the number of ranks,
    /// it is the launch's choice: a checkpoint is the same either way, and a resumed run does not inherit it.
    /// </summary>
    public bool ExpertParallel { get; init; }

    /// <summary>
    /// Apply the optimizer of PEER's expert tables inside the backward, to each coalesced gradient row as the fused
    /// kernel reduces it, instead of storing the rows as a gradient (docs/SPARSE_UPDATES.md, "Update in the
    /// backward"); the table rows are then clipped by the previous step's gradient norm. Off by default; not with
    /// more than one rank.
    /// </summary>
    public bool UpdateInBackward { get; init; }

    /// <summary>
    /// Experience replay (a continual-learning baseline, docs/LIFELONG.md): this fraction of every batch's sequences,
    /// rounded to whole sequences, is drawn from the replay text (TrainingRunOptions.ReplayPath:
    /// an earlier domain) instead of the training text; 0: none.
    /// </summary>
    public double ReplayFraction { get; init; }

    /// <summary>The replay buffer: only the first this many tokens of the replay text are replayed; null: all of it.</summary>
    public long? ReplayTokens { get; init; }

    /// <summary>
    /// An L2 pull toward the anchor weights θ₀ (the run's TrainingRunOptions.AnchorPath: the model an
    /// earlier phase ended with; a continual-learning baseline, docs/LIFELONG.md): after each optimizer step every
    /// parameter moves θ ← θ − η·λ·(θ − θ₀), the decoupled form of a penalty (λ/2)·‖θ − θ₀‖², as AdamW decouples weight
    /// decay; 0: none.
    /// </summary>
    public double AnchorPull { get; init; }

    /// <summary>Steps of linear warm-up.</summary>
    public int WarmupSteps { get; init; } = 50;

    /// <summary>The cosine decay ends at this fraction of the peak rate.</summary>
    public double MinLearningRateRatio { get; init; } = 0.1;

    /// <summary>Decoupled weight decay of weight matrices (never of norms, biases or product keys).</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>Adam β1.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Adam β2.</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>Gradients are rescaled so that their global L2 norm is at most this (0: off).</summary>
    public double GradientClip { get; init; } = 1.0;

    /// <summary>Validate every this many steps (and at the end).</summary>
    public int EvalInterval { get; init; } = 200;

    /// <summary>Validation tokens per evaluation.</summary>
    public long EvalTokens { get; init; } = 65536;

    /// <summary>A plain log line every this many steps when output is not a terminal.</summary>
    public int LogInterval { get; init; } = 50;

    /// <summary>Write a checkpoint every this many steps (and at the end); 0: only at the end.</summary>
    public int CheckpointInterval { get; init; } = 500;

    /// <summary>Seed of initialisation and of the data order.</summary>
    public long Seed { get; init; } = 1337;

    /// <summary>Most tokens in one step's batch (batch size × context length): 16M, far beyond what a CPU trains, small enough that no index overflows.</summary>
    public const long MaxTokensPerStep = 1 << 24;

    /// <summary>Sequences of each batch drawn from the replay text: <see cref="ReplayFraction"/> of the batch, rounded.</summary>
    public int ReplayRows() => (int)Math.Round(ReplayFraction * BatchSize, MidpointRounding.AwayFromZero);

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (Steps <= 0) throw new PeerSharpException($"steps {Steps} must be positive");
        if (BatchSize <= 0 || BatchSize > MaxTokensPerStep) throw new PeerSharpException($"batch size {BatchSize} must be between 1 and {MaxTokensPerStep}");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new PeerSharpException($"learning rate {LearningRate} must be a positive finite number");
        if (ExpertLearningRate is { } expertRate && (!(expertRate > 0) || !double.IsFinite(expertRate)))
            throw new PeerSharpException($"expert learning rate {expertRate} must be a positive finite number (or left out to follow the schedule)");
        if (KeyLearningRateScale is { } keyScale && !(keyScale > 0 && double.IsFinite(keyScale)))
            throw new PeerSharpException($"key learning rate scale {keyScale} must be a positive finite number (or left out to follow the schedule)");
        if (!Enum.IsDefined(TableState))
            throw new PeerSharpException($"table optimizer state {(int)TableState} is not known; expected {string.Join(", ", EnumNames.All<TableOptimizerState>())}");
        if (!(ReplayFraction >= 0 && ReplayFraction < 1)) throw new PeerSharpException($"replay fraction {ReplayFraction} must be at least 0 and below 1 (the share of each batch drawn from the replay text)");
        if (ReplayTokens is { } replayTokens && replayTokens <= 0) throw new PeerSharpException($"replay tokens {replayTokens} must be positive (or left out to replay the whole text)");
        if (ReplayFraction > 0 && ReplayRows() == 0) throw new PeerSharpException($"replay fraction {ReplayFraction} of a batch of {BatchSize} rounds to no sequence; expected at least 1/(2·{BatchSize})");
        if (ReplayFraction > 0 && ReplayRows() == BatchSize) throw new PeerSharpException($"replay fraction {ReplayFraction} of a batch of {BatchSize} leaves no sequence of the training text");
        if (!(AnchorPull >= 0) || !double.IsFinite(AnchorPull)) throw new PeerSharpException($"anchor pull {AnchorPull} must be a finite number of at least 0 (0: off)");
        if (AnchorPull > 0 && ExpertParallel) throw new PeerSharpException("the anchor pull does not run with expert parallelism (each rank holds only its rows of the tables); expected one or the other");
        if (AnchorPull * LearningRate >= 1) throw new PeerSharpException($"anchor pull {AnchorPull} times the learning rate {LearningRate} must be below 1, or a step would overshoot the anchor");
        if (WarmupSteps < 0) throw new PeerSharpException($"warm-up steps {WarmupSteps} must not be negative");
        if (!(MinLearningRateRatio >= 0 && MinLearningRateRatio <= 1))
            throw new PeerSharpException($"minimum learning rate ratio {MinLearningRateRatio} must be between 0 and 1 (a fraction of the peak rate)");
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay)) throw new PeerSharpException($"weight decay {WeightDecay} must be a finite number of at least 0");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new PeerSharpException($"Adam β1 {Beta1} must be at least 0 and below 1");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new PeerSharpException($"Adam β2 {Beta2} must be at least 0 and below 1");
        if (!(GradientClip >= 0) || !double.IsFinite(GradientClip)) throw new PeerSharpException($"gradient clip {GradientClip} must be a finite number of at least 0 (0: off)");
        if (EvalInterval <= 0) throw new PeerSharpException($"eval interval {EvalInterval} must be positive");
        if (EvalTokens <= 0) throw new PeerSharpException($"eval tokens {EvalTokens} must be positive");
        if (LogInterval <= 0) throw new PeerSharpException($"log interval {LogInterval} must be positive");
        if (CheckpointInterval < 0) throw new PeerSharpException($"checkpoint interval {CheckpointInterval} must not be negative (0: only at the end)");
    }
}
