using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PeerSharp.Kernels;

/// <summary>
/// The row update of lazy AdamW over raw float32 memory: for each touched row, in the order of the dense
/// reference (Optimizers/AdamW.cs, which is also its oracle in the tests),
///   p ← p·(1 − lr·λ);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;  p ← p − lr/(1 − β1^t) · m / (√(v/(1 − β2^t)) + ε).
/// Rows are independent, so threads split them freely and results do not depend on the thread count.
/// </summary>
internal static unsafe class SparseAdamWKernel
{
    const int RowBlock = 64;   // rows per work item

    /// <summary>The constants of one step: β's, ε, 1/(1 − β2^t), lr/(1 − β1^t) and the decay factor 1 − lr·λ.</summary>
    public readonly record struct Rule(float Beta1, float Beta2, float Epsilon, float InverseCorrection2, float StepSize, float Decay);

    /// <summary>
    /// Updates rows ids[i] (or row i when ids is null) of the table p [N, d] and its moments m, v [N, d] with
    /// gradient row i of gradients [count, d].
    /// </summary>
    public static void Update(in Rule rule, long* ids, float* gradients, int count, int d, float* p, float* m, float* v, int threads)
    {
        var r = rule;
        KernelThreads.For(count, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                long row = ids is null ? i : ids[i];
                UpdateRow(r, p + row * d, m + row * d, v + row * d, gradients + (long)i * d, d);
            }
        });
    }

    /// <summary>Updates one row: p, m, v and g point at its d entries.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void UpdateRow(in Rule r, float* p, float* m, float* v, float* g, int d)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var beta1 = Vector256.Create(r.Beta1);
            var beta2 = Vector256.Create(r.Beta2);
            var oneMinusBeta1 = Vector256.Create(1 - r.Beta1);
            var oneMinusBeta2 = Vector256.Create(1 - r.Beta2);
            var epsilon = Vector256.Create(r.Epsilon);
            var inverseCorrection2 = Vector256.Create(r.InverseCorrection2);
            var stepSize = Vector256.Create(r.StepSize);
            var decay = Vector256.Create(r.Decay);
            for (; j <= d - 8; j += 8)
            {
                var gj = Vector256.Load(g + j);
                var mj = Vector256.Load(m + j) * beta1 + oneMinusBeta1 * gj;
                var vj = Vector256.Load(v + j) * beta2 + oneMinusBeta2 * (gj * gj);
                var denominator = Vector256.Sqrt(vj * inverseCorrection2) + epsilon;
                var pj = Vector256.Load(p + j) * decay - stepSize * (mj / denominator);
                mj.Store(m + j);
                vj.Store(v + j);
                pj.Store(p + j);
            }
        }
        for (; j < d; j++)
        {
            float gj = g[j];
            float mj = m[j] * r.Beta1 + (1 - r.Beta1) * gj;
            float vj = v[j] * r.Beta2 + (1 - r.Beta2) * (gj * gj);
            float denominator = MathF.Sqrt(vj * r.InverseCorrection2) + r.Epsilon;
            (m[j], v[j]) = (mj, vj);
            p[j] = p[j] * r.Decay - r.StepSize * (mj / denominator);
        }
    }
}
