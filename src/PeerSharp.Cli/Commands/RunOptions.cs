using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Cli.Commands;

/// <summary>
/// The options that describe a run: a preset, a JSON config file, `--set` of any field, and the everyday flags, each
/// declared once below with the config field it sets. They resolve, in that order, into one overlay of the config
/// file's format (<see cref="RunConfig.Overlay"/>), as a sweep spec's runs do.
/// </summary>
sealed class RunOptions
{
    public readonly Option<string> Preset = new("--preset") { Description = "Named configuration: " + string.Join(", ", Presets.List().Select(p => p.Name)), DefaultValueFactory = _ => Presets.Default };
    public readonly Option<FileInfo?> Config = new("--config") { Description = "JSON config file (README: Configuration); overrides the preset" };
    readonly Option<string[]> _set = new("--set") { Description = "Any config field by its JSON path, like model.peer.topK=32 or model.pkm.subKeyCount=256 (repeatable; README: Configuration); overrides --config, and the flags below override it" };

    /// <summary>The everyday flags in the order `--help` lists them, each with the config field (JSON path) it sets.</summary>
    readonly (Option Option, string Path)[] _flags =
    [
        (new Option<int?>("--steps") { Description = "Optimizer steps" }, "train.steps"),
        (new Option<int?>("--batch-size") { Description = "Sequences per step" }, "train.batchSize"),
        (new Option<double?>("--lr") { Description = "Peak learning rate" }, "train.learningRate"),
        (EnumOption<TableOptimizerState>("--table-state", "Optimizer state of the expert tables"), "train.tableState"),
        (new Option<bool?>("--update-in-backward") { Description = "Update the PEER expert tables inside the backward (docs/SPARSE_UPDATES.md)" }, "train.updateInBackward"),
        (new Option<bool?>("--expert-parallel") { Description = "Under mpirun: shard every PEER table over the ranks by expert id (expert parallelism; docs/DISTRIBUTED.md)" }, "train.expertParallel"),
        (new Option<long?>("--seed") { Description = "Seed of initialisation and data order" }, "train.seed"),
        (new Option<int?>("--eval-interval") { Description = "Validate every N steps" }, "train.evalInterval"),
        (new Option<long?>("--eval-tokens") { Description = "Validation tokens per evaluation" }, "train.evalTokens"),
        (EnumOption<TokenizerKind>("--tokenizer", "Tokenizer"), "model.tokenizer"),
        (new Option<int?>("--context") { Description = "Context length in tokens" }, "model.contextLength"),
        (new Option<int?>("--d-model") { Description = "Model width" }, "model.modelDim"),
        (new Option<int?>("--layers") { Description = "Transformer blocks" }, "model.layerCount"),
        (EnumOption<PositionKind>("--positions", "Positions"), "model.positions"),
        (EnumOption<FeedForwardKind>("--ffn", "Feed-forward of the sparse blocks (the others are dense)"), "model.feedForward"),
        (new Option<string?>("--sparse-blocks") { Description = "middle, all, none or a list like 1,3" }, "model.sparseBlocks"),
        (new Option<string?>("--block-kinds") { Description = "Feed-forward of every block, like dense,moe,peer,dense (replaces --ffn and --sparse-blocks)" }, "model.blockKinds"),
        (new Option<long?>("--experts") { Description = "PEER expert count N (a perfect square)" }, "model.peer.subKeyCount"),
        (new Option<int?>("--peer-heads") { Description = "PEER retrieval heads h" }, "model.peer.headCount"),
        (new Option<int?>("--topk") { Description = "Experts per PEER head k" }, "model.peer.topK"),
        (new Option<int?>("--key-dim") { Description = "PEER query/key width d_key" }, "model.peer.keyDim"),
        (EnumOption<ExpertTableStorage>("--table-storage", "Element type of the PEER expert tables (bfloat16 needs --update-in-backward to train)"), "model.peer.tableStorage"),
        (new Option<bool?>("--query-bn") { Description = "Query BatchNorm on/off" }, "model.peer.queryBatchNorm"),
        (new Option<int?>("--moe-experts") { Description = "MoE expert count E" }, "model.moe.expertCount"),
        (EnumOption<MoeRouting>("--routing", "MoE routing"), "model.moe.routing"),
        (new Option<double?>("--capacity") { Description = "MoE capacity factor c" }, "model.moe.capacityFactor"),
    ];

    public IEnumerable<Option> All => [Preset, Config, _set, .. _flags.Select(f => f.Option)];

    /// <summary>
    /// Preset (or <paramref name="basis"/>, a resumed checkpoint's config, unless a preset is named), then the
    /// config file, then `--set`, then the flags.
    /// </summary>
    public RunConfig Resolve(ParseResult parse, RunConfig? basis = null)
    {
        var config = basis is not null && parse.GetResult(Preset) is null or { Implicit: true } ? basis : Presets.Get(parse.GetValue(Preset)!);
        if (basis is not null)   // like the number of ranks, expert parallelism is this launch's choice, not the checkpoint's
            config = config with { Train = config.Train with { ExpertParallel = false } };
        if (parse.GetValue(Config) is { } file) config = RunConfig.Load(file.FullName, config);
        if (parse.GetValue(_set) is { Length: > 0 } assignments) config = RunConfig.Overlay(config, RunConfig.Assignments(assignments), "--set", Literals);
        var flags = new JsonObject();
        foreach (var (option, path) in _flags)
            if (parse.GetResult(option) is { Implicit: false } given && given.GetValueOrDefault<object?>() is { } value)
            {
                RunConfig.Assign(flags, path, Json(option.Name, value));
                if (value is TokenizerKind tokenizer && tokenizer != config.Model.Tokenizer)
                    RunConfig.Assign(flags, "model.vocabSize", Tokenizers.VocabSize(tokenizer));   // the new tokenizer's vocabulary
            }
        var resolved = flags.Count == 0 ? config : RunConfig.Overlay(config, flags, "the command line", Literals);
        resolved.Validate();
        return resolved;
    }

    /// <summary>Values given on the command line may be NaN or Infinity: validation then names them as it names any bad value.</summary>
    const JsonNumberHandling Literals = JsonNumberHandling.AllowNamedFloatingPointLiterals;

    /// <summary>A flag's value as a config file writes its field (enums by their names); --experts N as the sub-keys n = √N.</summary>
    static JsonNode Json(string flag, object value) => flag == "--experts"
        ? ProductKeyOptions.SubKeyCountFor((long)value)
        : JsonSerializer.SerializeToNode(value, value.GetType(), new JsonSerializerOptions(RunConfig.Json) { NumberHandling = Literals })!;

    /// <summary>
    /// An option whose values are the enum's config-file names (<see cref="EnumNames"/>), listed in its help; an
    /// unknown name is a parse error, reported in one line like any other.
    /// </summary>
    internal static Option<T?> EnumOption<T>(string name, string description) where T : struct, Enum => new(name)
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
