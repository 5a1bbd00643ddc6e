using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// y = x Wᵀ + b where every output y[i, j] is one <see cref="VectorMath.Dot"/> of row i and weight row j, summed
/// in an order fixed by the width alone. A row's result is then bit-identical whatever the other rows of the
/// batch, its place among them, their count or the thread count, which libtorch's matrix products do not
/// promise (one row takes a matrix-vector kernel, rows at the end of a batch a tail kernel: they differ in the
/// last bits). Continuous batching needs it: a request decoded beside others must sample exactly what it samples
/// alone (docs/SERVING.md, "Batching"). The plain version is <c>nn.functional.linear</c>, which it agrees with to
/// rounding. Inference only: no gradient flows through it.
/// </summary>
public static unsafe class BatchInvariantLinear
{
    /// <summary>Output features per block of work (one thread computes a block's outputs for every row).</summary>
    const int BlockOutputs = 32;

    /// <summary>x [..., in] times weight [out, in], transposed, plus bias [out] (if any): [..., out], float32 on the CPU.</summary>
    public static Tensor Forward(Tensor x, Tensor weight, Tensor? bias = null, int? threads = null)
    {
        using var scope = NewDisposeScope();
        int inputs = (int)weight.shape[1], outputs = (int)weight.shape[0];
        if (x.shape[^1] != inputs || (bias is not null && bias.shape[0] != outputs))
            throw new ArgumentException($"batch-invariant linear: input [{string.Join(", ", x.shape)}], weight [{string.Join(", ", weight.shape)}] and bias do not fit");
        if (x.dtype != ScalarType.Float32 || weight.dtype != ScalarType.Float32 || (bias is not null && bias.dtype != ScalarType.Float32))
            throw new ArgumentException("batch-invariant linear takes float32 tensors");
        var rows = x.detach().reshape(-1, inputs).contiguous();                      // [M, in]
        var w = weight.detach().contiguous();                                        // [out, in]
        var b = bias?.detach().contiguous();
        int M = (int)rows.shape[0];
        var y = empty(M, outputs);                                                    // [M, out]
        float* pX = TensorMemory.Pointer<float>(rows), pW = TensorMemory.Pointer<float>(w), pY = TensorMemory.Pointer<float>(y);
        float* pB = b is null ? null : TensorMemory.Pointer<float>(b);
        KernelThreads.For(outputs, BlockOutputs, threads ?? KernelThreads.Default, (start, end) =>
        {
            for (int j = start; j < end; j++)
            {
                float* wj = pW + (long)j * inputs;
                float bj = pB is null ? 0 : pB[j];
                for (int i = 0; i < M; i++) pY[(long)i * outputs + j] = VectorMath.Dot(pX + (long)i * inputs, wj, inputs) + bj;
            }
        });
        long[] shape = [.. x.shape[..^1], outputs];
        return scope.MoveToOuter(y.view(shape));
    }
}
