namespace PeerSharp.Model;

/// <summary>How the model knows where a token stands in its sequence.</summary>
public enum PositionKind
{
    /// <summary>Learned absolute position embeddings added to the token embeddings (GPT-2).</summary>
    Learned,
    /// <summary>Rotary embeddings (RoPE) applied to attention queries and keys.</summary>
    Rotary,
}
