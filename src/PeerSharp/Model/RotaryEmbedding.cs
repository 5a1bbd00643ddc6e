using static TorchSharp.torch;

namespace PeerSharp.Model;

/// <summary>
/// Rotary position embedding (Su et al. 2021): rotates pairs of query/key features by position-dependent
/// angles so that attention scores depend on relative position. Tables are computed once.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    readonly Tensor _cos;   // (ContextLength, hd/2)
    readonly Tensor _sin;

    /// <summary>Tables for positions 0..contextLength-1 and heads of width headDim.</summary>
    public RotaryEmbedding(int contextLength, int headDim, double theta = 10000)
    {
        using var scope = NewDisposeScope();
        var inverseFrequency = pow(theta, -arange(0, headDim, 2, dtype: ScalarType.Float64) / headDim);   // (hd/2)
        var angles = outer(arange(contextLength, dtype: ScalarType.Float64), inverseFrequency);          // (T, hd/2)
        _cos = angles.cos().to(ScalarType.Float32).MoveToOuterDisposeScope();
        _sin = angles.sin().to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>Rotates x (B, H, T, hd) whose first position is <paramref name="start"/>.</summary>
    public Tensor Apply(Tensor x, int start)
    {
        using var scope = NewDisposeScope();
        var T = x.shape[2];
        var cos = _cos.narrow(0, start, T);                                    // (T, hd/2)
        var sin = _sin.narrow(0, start, T);
        return scope.MoveToOuter(Rotate(x, cos, sin));
    }

    /// <summary>Rotates x (B, H, 1, hd) of B sequences, sequence b at position positions[b] (B).</summary>
    public Tensor Apply(Tensor x, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var cos = _cos.index_select(0, positions).view(-1, 1, 1, _cos.shape[1]);     // (B, 1, 1, hd/2)
        var sin = _sin.index_select(0, positions).view(-1, 1, 1, _sin.shape[1]);
        return scope.MoveToOuter(Rotate(x, cos, sin));
    }

    static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var pairs = x.unflatten(x.dim() - 1, [x.shape[^1] / 2, 2]);            // (B, H, T, hd/2, 2); TorchSharp's unflatten takes no negative dim
        var even = pairs.select(-1, 0);
        var odd = pairs.select(-1, 1);
        var rotated = stack([even * cos - odd * sin, even * sin + odd * cos], dim: -1).flatten(-2);
        return scope.MoveToOuter(rotated);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
    }
}
