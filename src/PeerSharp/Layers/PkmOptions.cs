using System.Text.Json.Serialization;

namespace PeerSharp.Layers;

/// <summary>
/// Settings of one product-key memory layer (Lample et al. 2019), the paper's PKM baseline (PEER.md
/// "Baselines"): N = n² memory values retrieved through the same product keys as PEER.
/// </summary>
public sealed record PkmOptions
{
    /// <summary>d_model, taken from the model: the width of the input and of every memory value.</summary>
    [JsonIgnore]
    public int ModelDim { get; init; } = 256;

    /// <summary>n, the number of sub-keys per half; the memory has N = n² values.</summary>
    public int SubKeyCount { get; init; } = 128;

    /// <summary>h, the number of retrieval heads (each with its own query network; outputs summed).</summary>
    public int HeadCount { get; init; } = 8;

    /// <summary>k, the number of values each head selects (Lample et al. and the paper: 32).</summary>
    public int TopK { get; init; } = 32;

    /// <summary>d_key, the width of a query and of a full product key (two halves of d_key/2).</summary>
    public int KeyDim { get; init; } = 128;

    /// <summary>BatchNorm on the query features (Lample et al. 2019); on in the paper's runs.</summary>
    public bool QueryBatchNorm { get; init; } = true;

    /// <summary>N, the number of memory values.</summary>
    public int ValueCount => SubKeyCount * SubKeyCount;

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (ModelDim <= 0) throw new PeerSharpException($"PKM model dim {ModelDim} must be positive");
        if (SubKeyCount <= 0) throw new PeerSharpException($"PKM sub-key count n = {SubKeyCount} must be positive");
        if (HeadCount <= 0) throw new PeerSharpException($"PKM head count {HeadCount} must be positive");
        if (TopK <= 0 || TopK > SubKeyCount)
            throw new PeerSharpException($"PKM top-k {TopK} must be between 1 and the sub-key count n = {SubKeyCount}");
        if (KeyDim <= 0 || KeyDim % 2 != 0)
            throw new PeerSharpException($"PKM key dim {KeyDim} must be even and positive: a product key is two halves of d_key/2");
    }
}
