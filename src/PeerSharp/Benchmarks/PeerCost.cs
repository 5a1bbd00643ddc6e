using PeerSharp.Layers;

namespace PeerSharp.Benchmarks;

/// <summary>Arithmetic of a PEER layer, to size the dense feed-forward of equal forward cost.</summary>
public static class PeerCost
{
    /// <summary>
    /// Forward FLOPs per token (multiply and add counted apart): the h query networks 2·d·h·d_key, the sub-key
    /// scores 2·h·n·d_key (two halves of n keys of d_key/2), the experts h·k·4·d (u·x and g·σ·v). BatchNorm,
    /// top-k and softmax are not counted.
    /// </summary>
    public static long ForwardFlopsPerToken(PeerOptions o) =>
        2L * o.ModelDim * o.HeadCount * o.KeyDim + 2L * o.HeadCount * o.SubKeyCount * o.KeyDim + 4L * o.HeadCount * o.TopK * o.ModelDim;

    /// <summary>Forward FLOPs per token of a GELU feed-forward d → hidden → d (two matrix products).</summary>
    public static long DenseForwardFlopsPerToken(int modelDim, int hiddenDim) => 4L * modelDim * hiddenDim;

    /// <summary>The hidden width whose dense feed-forward costs what the PEER layer costs per token.</summary>
    public static int EqualFlopsHiddenDim(PeerOptions o) => (int)Math.Round(ForwardFlopsPerToken(o) / (4.0 * o.ModelDim));
}
