using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// One decoding step of causal self-attention for B sequences at once, each with its own cache of keys and values
/// at its own length: the new key and value of sequence b go to position length[b] of its cache, and its query
/// attends to positions 0..length[b]. Each (sequence, head) is computed alone in a fixed order, so a sequence's
/// output does not depend on the others in the step (docs/SERVING.md, "Batching"). The plain version is
/// <c>scaled_dot_product_attention</c> over each sequence's cache, which it agrees with to rounding.
/// </summary>
public static unsafe class DecodeAttention
{
    /// <summary>
    /// Appends keys and values (B, H, hd) to the caches and returns the attention output (B, H, hd) of queries (B, H, hd).
    /// keyCaches[b], valueCaches[b]: (1, H, capacity, hd) contiguous float32, holding lengths[b] positions.
    /// </summary>
    public static Tensor Step(Tensor queries, Tensor keys, Tensor values, IReadOnlyList<Tensor> keyCaches, IReadOnlyList<Tensor> valueCaches,
                              IReadOnlyList<int> lengths, int? threads = null)
    {
        using var scope = NewDisposeScope();
        int B = (int)queries.shape[0], H = (int)queries.shape[1], hd = (int)queries.shape[2];
        if (keyCaches.Count != B || valueCaches.Count != B || lengths.Count != B)
            throw new ArgumentException($"decode attention: {B} queries need as many caches and lengths, not {keyCaches.Count}, {valueCaches.Count}, {lengths.Count}");
        int capacity = (int)keyCaches[0].shape[2];
        for (int b = 0; b < B; b++)
            if (lengths[b] < 0 || lengths[b] >= capacity)
                throw new ArgumentException($"decode attention: sequence {b} holds {lengths[b]} positions; its cache has room for {capacity}");
        var q = queries.contiguous();
        var k = keys.contiguous();
        var v = values.contiguous();
        var output = empty(B, H, hd);                                                 // (B, H, hd)
        float* pQ = TensorMemory.Pointer<float>(q), pK = TensorMemory.Pointer<float>(k), pV = TensorMemory.Pointer<float>(v);
        float* pOut = TensorMemory.Pointer<float>(output);
        var keyBase = new IntPtr[B];
        var valueBase = new IntPtr[B];
        for (int b = 0; b < B; b++)
        {
            keyBase[b] = (IntPtr)TensorMemory.Pointer<float>(keyCaches[b]);
            valueBase[b] = (IntPtr)TensorMemory.Pointer<float>(valueCaches[b]);
        }
        float scale = 1 / MathF.Sqrt(hd);
        KernelThreads.For(B * H, 1, threads ?? KernelThreads.Default, (start, end) =>
        {
            var weights = new float[capacity];
            for (int item = start; item < end; item++)
            {
                int b = item / H, h = item % H, length = lengths[b];
                long vector = (long)item * hd;
                float* cachedKeys = (float*)keyBase[b] + (long)h * capacity * hd;     // (capacity, hd)
                float* cachedValues = (float*)valueBase[b] + (long)h * capacity * hd;
                new Span<float>(pK + vector, hd).CopyTo(new Span<float>(cachedKeys + (long)length * hd, hd));
                new Span<float>(pV + vector, hd).CopyTo(new Span<float>(cachedValues + (long)length * hd, hd));
                // softmax(q·k / √hd) over positions 0..length, in order.
                float max = float.NegativeInfinity;
                for (int t = 0; t <= length; t++)
                {
                    weights[t] = VectorMath.Dot(pQ + vector, cachedKeys + (long)t * hd, hd) * scale;
                    max = MathF.Max(max, weights[t]);
                }
                float sum = 0;
                for (int t = 0; t <= length; t++) sum += weights[t] = MathF.Exp(weights[t] - max);
                float* y = pOut + vector;
                new Span<float>(y, hd).Clear();
                for (int t = 0; t <= length; t++) VectorMath.Axpy(y, weights[t] / sum, cachedValues + (long)t * hd, hd);
            }
        });
        return scope.MoveToOuter(output);
    }
}
