using PeerSharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>Layers and tensors shared by the PEER layer tests.</summary>
static class PeerTesting
{
    /// <summary>A layer small enough for exact checks: N = 4² = 16, h 2, k 2, d_key 4, at d_model <see cref="SmallModelDim"/>.</summary>
    public static readonly PeerOptions Small = new() { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 };

    /// <summary>d_model of the small test layers.</summary>
    public const int SmallModelDim = 6;

    /// <summary>
    /// A float64 layer whose BatchNorm affine parameters and running statistics are random too: their defaults
    /// (1, 0, 0, 1) would hide a mix-up between them.
    /// </summary>
    public static Peer Float64Layer(PeerOptions options, int modelDim = SmallModelDim)
    {
        var peer = new Peer(modelDim, options);
        peer.to(ScalarType.Float64);
        using var noGrad = no_grad();
        var state = peer.state_dict();
        if (options.QueryBatchNorm)
        {
            state["query_norm.weight"].uniform_(0.5, 1.5);
            state["query_norm.bias"].normal_(0, 0.5);
            state["query_norm.running_mean"].normal_(0, 0.3);
            state["query_norm.running_var"].uniform_(0.2, 0.8);
        }
        return peer;
    }

    /// <summary>A float64 tensor of the given shape holding values (row-major).</summary>
    public static Tensor Float64(double[] values, params long[] shape) => tensor(values, shape, ScalarType.Float64);

    /// <summary>Largest |a - b|.</summary>
    public static double MaxAbsDifference(double[] a, double[] b)
    {
        Assert.Equal(a.Length, b.Length);
        return a.Zip(b, (p, q) => Math.Abs(p - q)).Max();
    }
}
