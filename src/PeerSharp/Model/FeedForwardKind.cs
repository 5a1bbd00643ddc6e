namespace PeerSharp.Model;

/// <summary>The feed-forward layers a block can have (<see cref="ModelConfig.FeedForwardKinds"/>).</summary>
public static class FeedForwardKind
{
    /// <summary>The transformer's ordinary GELU feed-forward.</summary>
    public const string Dense = "dense";

    /// <summary>Mixture of experts, expert- or token-choice routing (<see cref="Layers.MoeOptions"/>).</summary>
    public const string Moe = "moe";

    /// <summary>Product-key memory (<see cref="Layers.ProductKeyMemory"/>).</summary>
    public const string Pkm = "pkm";

    /// <summary>PEER (<see cref="Layers.Peer"/>).</summary>
    public const string Peer = "peer";

    /// <summary>Every kind, dense first.</summary>
    public static readonly IReadOnlyList<string> All = [Dense, Moe, Pkm, Peer];
}
