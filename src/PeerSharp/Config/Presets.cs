using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Config;

/// <summary>Named run configurations, from a seconds-long test model to the larger experiment models.</summary>
public static class Presets
{
    /// <summary>The preset the README's command trains.</summary>
    public const string Default = "default";

    static readonly Dictionary<string, (string Description, RunConfig Config)> All = new()
    {
        ["tiny"] = ("seconds; for tests", new RunConfig
        {
            Model = new ModelConfig
            {
                ContextLength = 32, ModelDim = 32, LayerCount = 2, AttentionHeads = 2,
                PeerOptions = new PeerOptions { SubKeyCount = 8, HeadCount = 2, TopK = 2, KeyDim = 8 },
                PkmOptions = new PkmOptions { SubKeyCount = 8, HeadCount = 2, TopK = 4, KeyDim = 8 },
                MoeOptions = new MoeOptions { ExpertCount = 4 },
            },
            Train = new TrainConfig { Steps = 40, BatchSize = 8, WarmupSteps = 5, EvalInterval = 20, EvalTokens = 2048, LogInterval = 10, CheckpointInterval = 0 },
        }),
        [Default] = ("4 blocks, d_model 128, PEER N = 128²; the README's run, about 3.5 minutes on 2 cores", new RunConfig
        {
            Model = new ModelConfig
            {
                ContextLength = 128, ModelDim = 128, LayerCount = 4, AttentionHeads = 4,
                PeerOptions = new PeerOptions { SubKeyCount = 128, HeadCount = 4, TopK = 8, KeyDim = 64 },
                PkmOptions = new PkmOptions { SubKeyCount = 128, KeyDim = 64 },
                MoeOptions = new MoeOptions { ExpertCount = 8 },
            },
            // EvalTokens beyond the bundled validation book's 320,523: every validation scores the whole book.
            Train = new TrainConfig { Steps = 1400, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 50, EvalInterval = 350, EvalTokens = 1_000_000, LogInterval = 100, CheckpointInterval = 350 },
        }),
        ["small"] = ("6 blocks, d_model 256, PEER N = 256², h = 8, k = 16; 5000 steps of 32×256 tokens", new RunConfig
        {
            Model = new ModelConfig
            {
                ContextLength = 256, ModelDim = 256, LayerCount = 6, AttentionHeads = 8,
                PeerOptions = new PeerOptions { SubKeyCount = 256, HeadCount = 8, TopK = 16, KeyDim = 128 },
                PkmOptions = new PkmOptions { SubKeyCount = 256, KeyDim = 128 },
                MoeOptions = new MoeOptions { ExpertCount = 16 },
            },
            Train = new TrainConfig { Steps = 5000, BatchSize = 32, LearningRate = 1e-3, WarmupSteps = 200, EvalInterval = 500, EvalTokens = 262144, LogInterval = 100, CheckpointInterval = 500 },
        }),
        ["paper"] = ("the paper's PEER layer (N = 1024², h = 8, k = 16) and baselines (PKM 1024² values, MoE 128 experts) in a 12-block model", new RunConfig
        {
            Model = new ModelConfig
            {
                ContextLength = 256, ModelDim = 256, LayerCount = 12, AttentionHeads = 8,
                PeerOptions = new PeerOptions { SubKeyCount = 1024, HeadCount = 8, TopK = 16, KeyDim = 128 },
                PkmOptions = new PkmOptions { SubKeyCount = 1024, HeadCount = 8, TopK = 32, KeyDim = 128 },
                MoeOptions = new MoeOptions { ExpertCount = 128 },
            },
            Train = new TrainConfig { Steps = 20000, BatchSize = 32, LearningRate = 1e-3, WarmupSteps = 500, EvalInterval = 1000, EvalTokens = 262144, LogInterval = 100, CheckpointInterval = 1000 },
        }),
    };

    /// <summary>Names and one-line descriptions of every preset.</summary>
    public static IEnumerable<(string Name, string Description)> List() => All.Select(p => (p.Key, p.Value.Description));

    /// <summary>The named preset.</summary>
    public static RunConfig Get(string name) =>
        All.TryGetValue(name, out var preset)
            ? preset.Config
            : throw new PeerSharpException($"unknown preset '{name}'; expected one of {string.Join(", ", All.Keys)}");
}
