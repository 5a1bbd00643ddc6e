using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PeerSharp.Kernels;

/// <summary>
/// The row update of lazy AdamW with one second moment per row (row-wise Adam, as used for large embedding
/// tables), over raw memory. For each touched row r with gradient row g of width d:
///   v_r ← β2·v_r + (1 − β2)·(Σ_j g_j²)/d;   s ← lr/(1 − β1^t) / (√(v_r/(1 − β2^t)) + ε);
///   m ← β1·m + (1 − β1)·g;   p ← p·(1 − lr·λ) − s·m.
/// The first moment m is float32, bfloat16 (read as float32, rounded to nearest even on store) or absent
/// (then m = g, which is β1 = 0 with 1 − β1^t = 1). Its plain-loop reference is in the tests
/// (Training/RowWiseAdamWTests.cs). Rows are independent, so results do not depend on the thread count.
/// </summary>
internal static unsafe class RowWiseAdamWKernel
{
    const int RowBlock = 64;   // rows per work item

    /// <summary>
    /// Updates rows ids[i] (or row i when ids is null) of the table p [N, d], its second moments v [N] and its
    /// first moments (m float32 [N, d], or mBf16 bfloat16 [N, d], or neither) with gradient row i of gradients [count, d].
    /// </summary>
    public static void Update(in SparseAdamWKernel.Rule rule, long* ids, float* gradients, int count, int d,
                              float* p, float* m, ushort* mBf16, float* v, int threads)
    {
        var r = rule;
        KernelThreads.For(count, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                var g = gradients + (long)i * d;
                long row = ids is null ? i : ids[i];
                UpdateRow(r, g, VectorMath.Dot(g, g, d), d, p + row * d, m is null ? null : m + row * d, mBf16 is null ? null : mBf16 + row * d, ref v[row]);
            }
        });
    }

    /// <summary>
    /// Updates one row, p [d], its first moment (m [d], or mBf16 [d], or neither) and its second moment v with its
    /// gradient g [d], whose sum of squares Σ_j g_j² the caller has computed (it is the row's share of the gradient
    /// norm as well).
    /// </summary>
    public static void UpdateRow(in SparseAdamWKernel.Rule r, float* g, float sumOfSquares, int d, float* p, float* m, ushort* mBf16, ref float v)
    {
        float vr = v * r.Beta2 + (1 - r.Beta2) * (sumOfSquares / d);
        v = vr;
        float step = r.StepSize / (MathF.Sqrt(vr * r.InverseCorrection2) + r.Epsilon);
        if (m is not null) UpdateRow(r, step, p, m, g, d);
        else if (mBf16 is not null) UpdateRowBf16(r, step, p, mBf16, g, d);
        else UpdateRowWithoutMomentum(r, step, p, g, d);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void UpdateRow(in SparseAdamWKernel.Rule r, float step, float* p, float* m, float* g, int d)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var (beta1, oneMinusBeta1) = (Vector256.Create(r.Beta1), Vector256.Create(1 - r.Beta1));
            var (decay, stepSize) = (Vector256.Create(r.Decay), Vector256.Create(step));
            for (; j <= d - 8; j += 8)
            {
                var mj = Vector256.Load(m + j) * beta1 + oneMinusBeta1 * Vector256.Load(g + j);
                mj.Store(m + j);
                (Vector256.Load(p + j) * decay - stepSize * mj).Store(p + j);
            }
        }
        for (; j < d; j++)
        {
            float mj = m[j] * r.Beta1 + (1 - r.Beta1) * g[j];
            m[j] = mj;
            p[j] = p[j] * r.Decay - step * mj;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void UpdateRowBf16(in SparseAdamWKernel.Rule r, float step, float* p, ushort* m, float* g, int d)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var (beta1, oneMinusBeta1) = (Vector256.Create(r.Beta1), Vector256.Create(1 - r.Beta1));
            var (decay, stepSize) = (Vector256.Create(r.Decay), Vector256.Create(step));
            for (; j <= d - 8; j += 8)
            {
                var mj = BFloat16Math.Load(m + j) * beta1 + oneMinusBeta1 * Vector256.Load(g + j);
                var rounded = BFloat16Math.RoundNearest(mj);
                BFloat16Math.Store(rounded, m + j);
                var kept = Vector256.ShiftLeft(rounded, 16).AsSingle();   // the step uses the moment as stored
                (Vector256.Load(p + j) * decay - stepSize * kept).Store(p + j);
            }
        }
        for (; j < d; j++)
        {
            m[j] = BFloat16Math.RoundNearest(BFloat16Math.ToSingle(m[j]) * r.Beta1 + (1 - r.Beta1) * g[j]);
            p[j] = p[j] * r.Decay - step * BFloat16Math.ToSingle(m[j]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void UpdateRowWithoutMomentum(in SparseAdamWKernel.Rule r, float step, float* p, float* g, int d)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var (decay, stepSize) = (Vector256.Create(r.Decay), Vector256.Create(step));
            for (; j <= d - 8; j += 8)
                (Vector256.Load(p + j) * decay - stepSize * Vector256.Load(g + j)).Store(p + j);
        }
        for (; j < d; j++) p[j] = p[j] * r.Decay - step * g[j];
    }
}
