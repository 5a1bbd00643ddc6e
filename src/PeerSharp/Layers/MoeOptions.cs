using System.Text.Json.Serialization;

namespace PeerSharp.Layers;

/// <summary>
/// Settings of one mixture-of-experts feed-forward, the paper's MoE baseline (PEER.md "Baselines"): E experts,
/// each a GELU feed-forward the size of the dense one, and a router that decides which tokens each expert sees.
/// The widths are not settings of their own: the model fills them in from its d_model and dense FFW width.
/// </summary>
public sealed record MoeOptions
{
    /// <summary>Expert-choice routing (Zhou et al. 2022): each expert takes its best tokens. The paper's MoE.</summary>
    public const string ExpertChoice = "expert-choice";

    /// <summary>Token-choice top-k routing (Shazeer et al. 2017, GShard, Switch): each token takes its best experts.</summary>
    public const string TokenChoice = "token-choice";

    /// <summary>d_model, taken from the model.</summary>
    [JsonIgnore]
    public int ModelDim { get; init; } = 256;

    /// <summary>Hidden width of each expert, taken from the model's dense feed-forward.</summary>
    [JsonIgnore]
    public int HiddenDim { get; init; } = 1024;

    /// <summary>E, the number of experts (the paper: 128; 8 suits our small models).</summary>
    public int ExpertCount { get; init; } = 8;

    /// <summary><see cref="ExpertChoice"/> or <see cref="TokenChoice"/>.</summary>
    public string Routing { get; init; } = ExpertChoice;

    /// <summary>
    /// Capacity factor c. Expert choice: each expert takes c · tokens / E tokens, so a token is processed by c
    /// experts on average (Zhou et al. 2022, §3.1). Token choice: each expert takes at most c · k · tokens / E,
    /// c times its share under perfect balance (Fedus et al. 2021, §2.2); later arrivals are dropped.
    /// </summary>
    public double CapacityFactor { get; init; } = 2.0;

    /// <summary>k, the experts each token chooses (token choice only).</summary>
    public int TopK { get; init; } = 2;

    /// <summary>α, the weight of the load-balancing loss (token choice only; Switch uses 0.01).</summary>
    public double AuxLossWeight { get; init; } = 0.01;

    /// <summary>Expert evaluations per token when every expert runs at its capacity: c, or c · k for token choice.</summary>
    public double ExpertsPerToken => Routing == TokenChoice ? CapacityFactor * TopK : CapacityFactor;

    /// <summary>
    /// Tokens each expert takes from a routing group of <paramref name="tokens"/> tokens, rounded up; never more
    /// than the group, since an expert sees a token at most once.
    /// </summary>
    public long Capacity(long tokens) => Math.Min(tokens, (long)Math.Ceiling(ExpertsPerToken * tokens / ExpertCount));

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (ModelDim <= 0 || HiddenDim <= 0) throw new PeerSharpException($"MoE widths {ModelDim} and {HiddenDim} must be positive");
        if (ExpertCount < 2) throw new PeerSharpException($"MoE expert count {ExpertCount} must be at least 2");
        if (Routing is not (ExpertChoice or TokenChoice))
            throw new PeerSharpException($"MoE routing '{Routing}' is not known; expected '{ExpertChoice}' or '{TokenChoice}'");
        if (!(CapacityFactor > 0)) throw new PeerSharpException($"MoE capacity factor {CapacityFactor} must be positive");
        if (TopK <= 0 || TopK > ExpertCount)
            throw new PeerSharpException($"MoE top-k {TopK} must be between 1 and the expert count {ExpertCount}");
        if (!(AuxLossWeight >= 0)) throw new PeerSharpException($"MoE auxiliary loss weight {AuxLossWeight} must not be negative");
    }
}
