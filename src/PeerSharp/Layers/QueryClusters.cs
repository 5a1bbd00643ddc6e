using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// k-means over half-queries: where a set of queries falls in one half's sub-key space, as a few centres. Sub-keys
/// placed at such centres score highest for the queries around them, which is how growth gives a new domain's
/// queries sub-keys of their own (DESIGN.md "Growth that routes"), as codebook methods initialise codes from the
/// data (Łańcucki et al. 2020, "Robust training of vector quantized bottleneck models").
/// </summary>
public static class QueryClusters
{
    /// <summary>
    /// <paramref name="count"/> centres of <paramref name="points"/> [P, d] (P ≥ count): Lloyd's iterations from
    /// <paramref name="count"/> distinct points drawn with <paramref name="seed"/>; a cluster that empties keeps its
    /// centre. Sums in float64 over a fixed order, so the same points and seed give the same centres. → [count, d].
    /// </summary>
    public static Tensor Centres(Tensor points, int count, long seed, int iterations = 25)
    {
        if (points.dim() != 2) throw new ArgumentException($"points must be [P, d], not [{string.Join(", ", points.shape)}]", nameof(points));
        if (count < 1 || count > points.shape[0])
            throw new ArgumentException($"cannot place {count} centres among {points.shape[0]} points", nameof(count));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = points.detach().to(ScalarType.Float64);                                    // [P, d]
        var generator = new Generator((ulong)seed);
        var centres = x.index_select(0, randperm(x.shape[0], generator: generator).narrow(0, 0, count));   // [count, d]
        var squaredNorms = x.square().sum(1, keepdim: true);                               // [P, 1]
        for (int i = 0; i < iterations; i++)
        {
            var distances = squaredNorms - 2 * x.matmul(centres.t()) + centres.square().sum(1).unsqueeze(0);   // [P, count]
            var nearest = distances.argmin(1);                                             // [P]
            var sums = zeros_like(centres).index_add_(0, nearest, x, 1);                    // [count, d]
            var sizes = zeros(count, dtype: ScalarType.Float64).index_add_(0, nearest, ones(x.shape[0], dtype: ScalarType.Float64), 1).unsqueeze(1);
            var moved = where(sizes.gt(0), sums / sizes.clamp_min(1), centres);
            if (moved.eq(centres).all().item<bool>()) break;   // converged: no point changed cluster
            centres = moved;
        }
        return scope.MoveToOuter(centres.to(points.dtype));
    }
}
