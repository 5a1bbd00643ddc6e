using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// A scope, opened from above (the model's batched decoding step), inside which the layers' matrix products run
/// <see cref="BatchInvariantLinear"/> instead of libtorch's, so that a token's result does not depend on the other
/// tokens of the batch. Outside it (training, evaluation, prefill) the layers use libtorch as always. Per thread:
/// a decoding step runs on one thread.
/// </summary>
public static class BatchInvariance
{
    [ThreadStatic] static int _depth;

    /// <summary>Whether this thread is inside a scope.</summary>
    public static bool Active => _depth > 0;

    /// <summary>Opens a scope on this thread until disposed.</summary>
    public static IDisposable Enter()
    {
        _depth++;
        return new Scope();
    }

    /// <summary>The layer applied to x: batch-invariant inside a scope, libtorch's otherwise.</summary>
    public static Tensor Linear(Linear layer, Tensor x) => Active ? BatchInvariantLinear.Forward(x, layer.weight!, layer.bias) : layer.forward(x);

    /// <summary>x [..., in] times weight [out, in], transposed: batch-invariant inside a scope, libtorch's otherwise.</summary>
    public static Tensor TimesTransposed(Tensor x, Tensor weight) => Active ? BatchInvariantLinear.Forward(x, weight) : x.matmul(weight.t());

    sealed class Scope : IDisposable
    {
        bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _depth--;
        }
    }
}
