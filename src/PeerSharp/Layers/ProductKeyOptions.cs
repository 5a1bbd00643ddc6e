using System.Text.Json.Serialization;
using PeerSharp.Kernels;

namespace PeerSharp.Layers;

/// <summary>
/// What PEER and PKM share: the product-key index over N = n² rows (DESIGN.md "The algorithm", steps 1-3),
/// h retrieval heads with their query networks, the k rows each head selects, and which kernels run it.
/// The layer's width d_model is not part of it: the model (or the caller) passes it to the layer.
/// </summary>
public abstract record ProductKeyOptions
{
    /// <summary>Largest n: N = n² must stay below 2³¹ rows, the range of the kernels' row indices.</summary>
    public const int MaxSubKeyCount = 32768;

    /// <summary>n, the number of sub-keys per half; the layer has N = n² rows (experts or memory values).</summary>
    public int SubKeyCount { get; init; } = 128;

    /// <summary>h, the number of retrieval heads (each with its own query network; outputs summed).</summary>
    public int HeadCount { get; init; } = 8;

    /// <summary>k, the number of rows each head selects.</summary>
    public int TopK { get; init; } = 16;

    /// <summary>d_key, the width of a query and of a full product key (two halves of d_key/2).</summary>
    public int KeyDim { get; init; } = 128;

    /// <summary>BatchNorm on the query features (Lample et al. 2019); on in the paper's runs.</summary>
    public bool QueryBatchNorm { get; init; } = true;

    /// <summary>
    /// A balance term added to the training loss against the retrieval collapse (DESIGN.md "Keeping experts alive"):
    /// none (the paper), on the per-half sub-key marginals, on the joint distribution over the N rows, or the entropy of
    /// the batch-mean distribution over the N rows.
    /// </summary>
    public RetrievalBalance Balance { get; init; } = RetrievalBalance.None;

    /// <summary>The weight of the <see cref="Balance"/> term in the training loss.</summary>
    public double BalanceWeight { get; init; } = 0.01;

    /// <summary>
    /// Cosine retrieval: each query half and each sub-key L2-normalised, the scores multiplied by a learned
    /// temperature (state-dict name score_scale), instead of raw dot products (DESIGN.md "Keeping experts alive").
    /// </summary>
    public bool CosineKeys { get; init; }

    /// <summary>
    /// Per-head rotation of the row ids: head j's pair (a, b) names row ((a + jΔ) mod n)·n + (b + jΔ) mod n with
    /// Δ = ⌊n / h⌋, so heads that agree on a pair of sub-keys still reach different rows (DESIGN.md "Keeping experts alive").
    /// </summary>
    public bool HeadRotation { get; init; }

    /// <summary>
    /// Dead-key revival every this many training steps (0: off): a sub-key that no selection used since the last
    /// revival is moved onto a recent query of its half, scaled to the living sub-keys' mean length, as codebook
    /// methods restart dead codes from encoder outputs (DESIGN.md "Keeping experts alive"). State-dict names
    /// revival_counts and revival_step when on.
    /// </summary>
    public int RevivalInterval { get; init; }

    /// <summary>Fused C# kernels (float32 on the CPU) or plain tensor ops.</summary>
    public KernelChoice Kernel { get; init; } = KernelChoice.Fused;

    /// <summary>N = n², the number of rows the index selects from.</summary>
    [JsonIgnore]
    public long RowCount => (long)SubKeyCount * SubKeyCount;

    /// <summary>The layer's name in messages ("PEER", "PKM").</summary>
    private protected abstract string LayerName { get; }

    /// <summary>n for N rows; N must be a perfect square n² with n within <see cref="MaxSubKeyCount"/>.</summary>
    public static int SubKeyCountFor(long rowCount)
    {
        var n = (long)Math.Round(Math.Sqrt(rowCount));
        if (rowCount <= 0 || n * n != rowCount || n > MaxSubKeyCount)
            throw new PeerSharpException($"expert count {rowCount} is not a perfect square n² with 1 ≤ n ≤ {MaxSubKeyCount}; product keys need N = n² (for example 16384 = 128²)");
        return (int)n;
    }

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public virtual void Validate()
    {
        if (SubKeyCount <= 0 || SubKeyCount > MaxSubKeyCount)
            throw new PeerSharpException($"{LayerName} sub-key count n = {SubKeyCount} must be between 1 and {MaxSubKeyCount}");
        if (HeadCount <= 0 || HeadCount > 1024) throw new PeerSharpException($"{LayerName} head count {HeadCount} must be between 1 and 1024");
        if (TopK <= 0 || TopK > SubKeyCount)
            throw new PeerSharpException($"{LayerName} top-k {TopK} must be between 1 and the sub-key count n = {SubKeyCount}");
        if (KeyDim <= 0 || KeyDim % 2 != 0 || KeyDim > 65536)
            throw new PeerSharpException($"{LayerName} key dim {KeyDim} must be even, positive and at most 65536: a product key is two halves of d_key/2");
        if (!Enum.IsDefined(Balance)) throw new PeerSharpException($"{LayerName} balance {(int)Balance} is not known; expected none, halves, joint or entropy");
        if (!(BalanceWeight >= 0 && BalanceWeight <= 100)) throw new PeerSharpException($"{LayerName} balance weight {BalanceWeight} must be between 0 and 100");
        if (RevivalInterval < 0) throw new PeerSharpException($"{LayerName} revival interval {RevivalInterval} must be 0 (off) or a number of steps");
        if (!Enum.IsDefined(Kernel)) throw new PeerSharpException($"{LayerName} kernel {(int)Kernel} is not known; expected plain or fused");
    }
}
