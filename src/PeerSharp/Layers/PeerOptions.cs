namespace PeerSharp.Layers;

/// <summary>The expert non-linearity σ in e_i(x) = σ(u_i · x) · v_i. The paper allows "ReLU or GELU".</summary>
public enum ExpertActivation
{
    /// <summary>Exact (erf) GELU, our default.</summary>
    Gelu,
    /// <summary>ReLU.</summary>
    Relu,
}

/// <summary>Which implementation computes Σ g_i · σ(u_i · x) · v_i over the selected experts.</summary>
public enum ExpertKernel
{
    /// <summary>Pure tensor ops (gathers the selected rows); device independent, the tests' oracle.</summary>
    Plain,
    /// <summary>
    /// Fused C# kernels for retrieval and experts with sparse expert-table gradients (CPU; elsewhere the layer
    /// uses Plain).
    /// </summary>
    Fused,
}

/// <summary>
/// Settings of one PEER layer (PEER.md "The layer"). N = n² experts retrieved through two sets of n sub-keys.
/// </summary>
public sealed record PeerOptions
{
    /// <summary>d_model: width of the layer's input and output. Not part of a model's JSON config, which takes it from the model.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public int ModelDim { get; init; } = 256;

    /// <summary>n, the number of sub-keys per half; the layer has N = n² experts.</summary>
    public int SubKeyCount { get; init; } = 128;

    /// <summary>h, the number of retrieval heads (each with its own query network; outputs summed).</summary>
    public int HeadCount { get; init; } = 8;

    /// <summary>k, the number of experts each head selects.</summary>
    public int TopK { get; init; } = 16;

    /// <summary>d_key, the width of a query and of a full product key (two halves of d_key/2).</summary>
    public int KeyDim { get; init; } = 128;

    /// <summary>σ of the single-neuron experts.</summary>
    public ExpertActivation Activation { get; init; } = ExpertActivation.Gelu;

    /// <summary>BatchNorm on the query features (Lample et al. 2019); on in the paper's runs.</summary>
    public bool QueryBatchNorm { get; init; } = true;

    /// <summary>How the selected experts are evaluated; the fused kernel is used on the CPU, tensor ops elsewhere.</summary>
    public ExpertKernel Kernel { get; init; } = ExpertKernel.Fused;

    /// <summary>N, the number of experts.</summary>
    public int ExpertCount => SubKeyCount * SubKeyCount;

    /// <summary>Options for N experts; N must be a perfect square.</summary>
    public static int SubKeyCountFor(long expertCount)
    {
        var n = (int)Math.Round(Math.Sqrt(expertCount));
        if (expertCount <= 0 || (long)n * n != expertCount)
            throw new PeerSharpException($"expert count {expertCount} is not a perfect square; PEER needs N = n² (for example 16384 = 128²)");
        return n;
    }

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (ModelDim <= 0) throw new PeerSharpException($"PEER model dim {ModelDim} must be positive");
        if (SubKeyCount <= 0) throw new PeerSharpException($"PEER sub-key count n = {SubKeyCount} must be positive");
        if (HeadCount <= 0) throw new PeerSharpException($"PEER head count {HeadCount} must be positive");
        if (TopK <= 0 || TopK > SubKeyCount)
            throw new PeerSharpException($"PEER top-k {TopK} must be between 1 and the sub-key count n = {SubKeyCount}");
        if (KeyDim <= 0 || KeyDim % 2 != 0)
            throw new PeerSharpException($"PEER key dim {KeyDim} must be even and positive: a product key is two halves of d_key/2");
    }
}
