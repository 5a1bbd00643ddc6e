namespace PeerSharp.Model;

/// <summary>The feed-forward layers a block can have (<see cref="ModelConfig.FeedForwardKinds"/>).</summary>
public enum FeedForwardKind
{
    /// <summary>The transformer's ordinary GELU feed-forward (<see cref="Layers.DenseFeedForward"/>).</summary>
    Dense,
    /// <summary>Mixture of experts, expert- or token-choice routing (<see cref="Layers.MoeOptions"/>).</summary>
    Moe,
    /// <summary>Product-key memory (<see cref="Layers.ProductKeyMemory"/>).</summary>
    Pkm,
    /// <summary>PEER (<see cref="Layers.Peer"/>).</summary>
    Peer,
}
