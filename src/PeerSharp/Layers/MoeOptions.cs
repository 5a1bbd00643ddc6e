namespace PeerSharp.Layers;

/// <summary>
/// Settings of one mixture-of-experts feed-forward, the paper's MoE baseline (DESIGN.md "Baselines"): E experts,
/// each a GELU feed-forward the size of the dense one, and a router that decides which tokens each expert sees.
/// The widths are not settings of their own: the layer takes d_model and the expert width from its caller.
/// </summary>
public sealed record MoeOptions
{
    /// <summary>E, the number of experts (the paper: 128; 8 suits our small models).</summary>
    public int ExpertCount { get; init; } = 8;

    /// <summary>Who chooses: each expert its tokens (the paper's MoE), or each token its experts.</summary>
    public MoeRouting Routing { get; init; } = MoeRouting.ExpertChoice;

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
    public double ExpertsPerToken => Routing == MoeRouting.TokenChoice ? CapacityFactor * TopK : CapacityFactor;

    /// <summary>
    /// Tokens each expert takes from a routing group of <paramref name="tokens"/> tokens, rounded up; never more
    /// than the group, since an expert sees a token at most once.
    /// </summary>
    public long Capacity(long tokens) => Math.Min(tokens, (long)Math.Ceiling(ExpertsPerToken * tokens / ExpertCount));

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (ExpertCount < 2 || ExpertCount > 65536) throw new PeerSharpException($"MoE expert count {ExpertCount} must be between 2 and 65536");
        if (!Enum.IsDefined(Routing))
            throw new PeerSharpException($"MoE routing {(int)Routing} is not known; expected expert-choice or token-choice");
        if (!(CapacityFactor > 0)) throw new PeerSharpException($"MoE capacity factor {CapacityFactor} must be positive");
        if (TopK <= 0 || TopK > ExpertCount)
            throw new PeerSharpException($"MoE top-k {TopK} must be between 1 and the expert count {ExpertCount}");
        if (!(AuxLossWeight >= 0)) throw new PeerSharpException($"MoE auxiliary loss weight {AuxLossWeight} must not be negative");
    }
}
