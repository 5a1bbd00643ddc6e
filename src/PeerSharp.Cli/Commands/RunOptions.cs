using System.CommandLine;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Cli.Commands;

/// <summary>The options that describe a run: a preset, a JSON config file, and overrides of single fields.</summary>
sealed class RunOptions
{
    public readonly Option<string> Preset = new("--preset") { Description = "Named configuration: " + string.Join(", ", Presets.List().Select(p => p.Name)), DefaultValueFactory = _ => Presets.Default };
    public readonly Option<FileInfo?> Config = new("--config") { Description = "JSON config file (README: Configuration); overrides the preset" };
    public readonly Option<int?> Steps = new("--steps") { Description = "Optimizer steps" };
    public readonly Option<int?> BatchSize = new("--batch-size") { Description = "Sequences per step" };
    public readonly Option<double?> LearningRate = new("--lr") { Description = "Peak learning rate" };
    public readonly Option<bool?> ExpertParallel = new("--expert-parallel") { Description = "Under mpirun: shard every PEER table over the ranks by expert id (expert parallelism; docs/DISTRIBUTED.md)" };
    public readonly Option<TableOptimizerState?> TableState = EnumOption<TableOptimizerState>("--table-state", "Optimizer state of the expert tables");
    public readonly Option<bool?> UpdateInBackward = new("--update-in-backward") { Description = "Update the PEER expert tables inside the backward (docs/SPARSE_UPDATES.md)" };
    public readonly Option<long?> Seed = new("--seed") { Description = "Seed of initialisation and data order" };
    public readonly Option<int?> EvalInterval = new("--eval-interval") { Description = "Validate every N steps" };
    public readonly Option<long?> EvalTokens = new("--eval-tokens") { Description = "Validation tokens per evaluation" };
    public readonly Option<TokenizerKind?> Tokenizer = EnumOption<TokenizerKind>("--tokenizer", "Tokenizer");
    public readonly Option<int?> Context = new("--context") { Description = "Context length in tokens" };
    public readonly Option<int?> ModelDim = new("--d-model") { Description = "Model width" };
    public readonly Option<int?> Layers = new("--layers") { Description = "Transformer blocks" };
    public readonly Option<PositionKind?> Positions = EnumOption<PositionKind>("--positions", "Positions");
    public readonly Option<FeedForwardKind?> FeedForward = EnumOption<FeedForwardKind>("--ffn", "Feed-forward of the sparse blocks (the others are dense)");
    public readonly Option<string?> SparseBlocks = new("--sparse-blocks") { Description = "middle, all, none or a list like 1,3" };
    public readonly Option<string?> BlockKinds = new("--block-kinds") { Description = "Feed-forward of every block, like dense,moe,peer,dense (replaces --ffn and --sparse-blocks)" };
    public readonly Option<long?> Experts = new("--experts") { Description = "PEER expert count N (a perfect square)" };
    public readonly Option<int?> PeerHeads = new("--peer-heads") { Description = "PEER retrieval heads h" };
    public readonly Option<int?> TopK = new("--topk") { Description = "Experts per PEER head k" };
    public readonly Option<int?> KeyDim = new("--key-dim") { Description = "PEER query/key width d_key" };
    public readonly Option<Kernels.ExpertTableStorage?> TableStorage = EnumOption<Kernels.ExpertTableStorage>("--table-storage", "Element type of the PEER expert tables (bfloat16 needs --update-in-backward to train)");
    public readonly Option<bool?> QueryNorm = new("--query-bn") { Description = "Query BatchNorm on/off" };
    public readonly Option<int?> MoeExperts = new("--moe-experts") { Description = "MoE expert count E" };
    public readonly Option<MoeRouting?> Routing = EnumOption<MoeRouting>("--routing", "MoE routing");
    public readonly Option<double?> Capacity = new("--capacity") { Description = "MoE capacity factor c" };

    public IEnumerable<Option> All => [Preset, Config, Steps, BatchSize, LearningRate, TableState, UpdateInBackward, ExpertParallel, Seed, EvalInterval, EvalTokens, Tokenizer, Context, ModelDim, Layers, Positions, FeedForward, SparseBlocks, BlockKinds, Experts, PeerHeads, TopK, KeyDim, TableStorage, QueryNorm, MoeExperts, Routing, Capacity];

    /// <summary>
    /// Preset (or <paramref name="basis"/>, a resumed checkpoint's config, unless a preset is named), then the
    /// config file, then command-line overrides.
    /// </summary>
    public RunConfig Resolve(ParseResult parse, RunConfig? basis = null)
    {
        var config = basis is not null && parse.GetResult(Preset) is null or { Implicit: true } ? basis : Presets.Get(parse.GetValue(Preset)!);
        if (basis is not null)   // like the number of ranks, expert parallelism is this launch's choice, not the checkpoint's
            config = config with { Train = config.Train with { ExpertParallel = false } };
        if (parse.GetValue(Config) is { } file) config = RunConfig.Load(file.FullName, config);
        var model = config.Model;
        var peer = model.PeerOptions;
        var tokenizer = parse.GetValue(Tokenizer) ?? model.Tokenizer;
        var experts = parse.GetValue(Experts);
        peer = peer with
        {
            SubKeyCount = experts is { } n ? ProductKeyOptions.SubKeyCountFor(n) : peer.SubKeyCount,
            HeadCount = parse.GetValue(PeerHeads) ?? peer.HeadCount,
            TopK = parse.GetValue(TopK) ?? peer.TopK,
            KeyDim = parse.GetValue(KeyDim) ?? peer.KeyDim,
            QueryBatchNorm = parse.GetValue(QueryNorm) ?? peer.QueryBatchNorm,
            TableStorage = parse.GetValue(TableStorage) ?? peer.TableStorage,
        };
        var moe = model.MoeOptions with
        {
            ExpertCount = parse.GetValue(MoeExperts) ?? model.MoeOptions.ExpertCount,
            Routing = parse.GetValue(Routing) ?? model.MoeOptions.Routing,
            CapacityFactor = parse.GetValue(Capacity) ?? model.MoeOptions.CapacityFactor,
        };
        model = model with
        {
            Tokenizer = tokenizer,
            VocabSize = tokenizer == model.Tokenizer ? model.VocabSize : Tokenizers.VocabSize(tokenizer),
            ContextLength = parse.GetValue(Context) ?? model.ContextLength,
            ModelDim = parse.GetValue(ModelDim) ?? model.ModelDim,
            LayerCount = parse.GetValue(Layers) ?? model.LayerCount,
            Positions = parse.GetValue(Positions) ?? model.Positions,
            FeedForward = parse.GetValue(FeedForward) ?? model.FeedForward,
            SparseBlocks = parse.GetValue(SparseBlocks) ?? model.SparseBlocks,
            BlockKinds = parse.GetValue(BlockKinds) ?? model.BlockKinds,
            PeerOptions = peer,
            MoeOptions = moe,
        };
        var train = config.Train with
        {
            Steps = parse.GetValue(Steps) ?? config.Train.Steps,
            BatchSize = parse.GetValue(BatchSize) ?? config.Train.BatchSize,
            LearningRate = parse.GetValue(LearningRate) ?? config.Train.LearningRate,
            TableState = parse.GetValue(TableState) ?? config.Train.TableState,
            UpdateInBackward = parse.GetValue(UpdateInBackward) ?? config.Train.UpdateInBackward,
            ExpertParallel = parse.GetValue(ExpertParallel) ?? config.Train.ExpertParallel,
            Seed = parse.GetValue(Seed) ?? config.Train.Seed,
            EvalInterval = parse.GetValue(EvalInterval) ?? config.Train.EvalInterval,
            EvalTokens = parse.GetValue(EvalTokens) ?? config.Train.EvalTokens,
        };
        var resolved = new RunConfig { Model = model, Train = train };
        resolved.Validate();
        return resolved;
    }

    /// <summary>
    /// An option whose values are the enum's config-file names (<see cref="EnumNames"/>), listed in its help; an
    /// unknown name is a parse error, reported in one line like any other.
    /// </summary>
    static Option<T?> EnumOption<T>(string name, string description) where T : struct, Enum => new(name)
    {
        Description = $"{description}: {string.Join(", ", EnumNames.All<T>())}",
        CustomParser = result =>
        {
            try
            {
                return EnumNames.Parse<T>(result.Tokens.Single().Value, name.TrimStart('-'));
            }
            catch (PeerSharpException e)
            {
                result.AddError(e.Message);
                return null;
            }
        },
    };
}
