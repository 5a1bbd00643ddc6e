using System.Runtime.CompilerServices;
using PeerSharp.Layers;

namespace PeerSharp.Kernels;

/// <summary>
/// The fused PEER expert step over raw float32 memory (llm.c style: a forward and a backward over plain
/// arrays, next to the tensor-op reference <see cref="PlainExperts"/>). With S = h·k selections per token:
///
///   forward   a[m,s] = u_id · x_m;   y_m = Σ_s g[m,s] · σ(a[m,s]) · v_id
///   backward  t = v_id · dy_m;   dg[m,s] = σ(a) · t;   c_u = g · t · σ'(a);   c_v = g · σ(a)
///             dx_m = Σ_s c_u · u_id;   dU[id] = Σ_(m,s)→id c_u · x_m;   dV[id] = Σ_(m,s)→id c_v · dy_m
///
/// Tokens are independent in the forward and in the first backward phase (threads over token blocks, each
/// owning its rows of y, dx and dg). The table gradients are reduced per touched row in a fixed order
/// (<see cref="RowGroups"/>), so nothing is ever [tokens, h, k, d_model] and nothing is N-sized.
/// </summary>
internal static unsafe class FusedExpertsKernel
{
    const int TokenBlock = 8;      // tokens per work item
    const int RowBlock = 64;       // gradient rows per work item
    const int PrefetchAhead = 2;   // selections whose rows are requested before they are needed

    /// <summary>Pointers and sizes of one batch: x [M, d], ids and gates [M, S], down and up [N, d].</summary>
    internal readonly struct Batch(float* x, long* ids, float* gates, float* down, float* up, int tokens, int slots, int dim)
    {
        public readonly float* X = x, Gates = gates, Down = down, Up = up;
        public readonly long* Ids = ids;
        public readonly int Tokens = tokens, Slots = slots, Dim = dim;
    }

    /// <summary>y [M, d] and the pre-activations a [M, S] (kept for the backward).</summary>
    public static void Forward(Batch b, float* preActivations, float* y, ExpertActivation activation, int threads)
    {
        KernelThreads.For(b.Tokens, TokenBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int d = b.Dim, S = b.Slots;
            for (int m = start; m < end; m++)
            {
                float* xm = b.X + (long)m * d;
                float* ym = y + (long)m * d;
                new Span<float>(ym, d).Clear();
                long* ids = b.Ids + (long)m * S;
                for (int s = 0; s < Math.Min(PrefetchAhead, S); s++) PrefetchRows(b, ids[s]);
                for (int s = 0; s < S; s++)
                {
                    if (s + PrefetchAhead < S) PrefetchRows(b, ids[s + PrefetchAhead]);
                    long id = ids[s];
                    float a = VectorMath.Dot(b.Down + id * d, xm, d);
                    preActivations[(long)m * S + s] = a;
                    float weight = b.Gates[(long)m * S + s] * ExpertNonlinearity.Value(a, activation);
                    VectorMath.Axpy(ym, weight, b.Up + id * d, d);
                }
            }
        });
    }

    /// <summary>
    /// First backward phase, per token: dx [M, d] and dg [M, S] (either may be null when not wanted), and the
    /// coefficients c_u, c_v [M, S] of the table gradients.
    /// </summary>
    public static void BackwardTokens(Batch b, float* preActivations, float* dy, float* dx, float* dGates,
                                      float* coefficientU, float* coefficientV, ExpertActivation activation, int threads)
    {
        KernelThreads.For(b.Tokens, TokenBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int d = b.Dim, S = b.Slots;
            for (int m = start; m < end; m++)
            {
                float* dym = dy + (long)m * d;
                float* dxm = dx is null ? null : dx + (long)m * d;
                if (dxm is not null) new Span<float>(dxm, d).Clear();
                long* ids = b.Ids + (long)m * S;
                for (int s = 0; s < Math.Min(PrefetchAhead, S); s++) PrefetchRows(b, ids[s]);
                for (int s = 0; s < S; s++)
                {
                    if (s + PrefetchAhead < S) PrefetchRows(b, ids[s + PrefetchAhead]);
                    long id = ids[s], at = (long)m * S + s;
                    float t = VectorMath.Dot(b.Up + id * d, dym, d);
                    var (value, derivative) = ExpertNonlinearity.Evaluate(preActivations[at], activation);
                    float gate = b.Gates[at];
                    float cu = gate * t * derivative;
                    if (dGates is not null) dGates[at] = value * t;
                    coefficientU[at] = cu;
                    coefficientV[at] = gate * value;
                    if (dxm is not null) VectorMath.Axpy(dxm, cu, b.Down + id * d, d);
                }
            }
        });
    }

    /// <summary>
    /// Second backward phase: for each touched row g (ascending id), rows[g] = Σ coefficient[p] · source[token(p)]
    /// over the row's positions p in ascending order, token(p) = p / slots. source is x (for dU) or dy (for dV),
    /// [M, d]; its rows are sourceStride floats apart (dim when null). A null coefficient means 1 (plain sums
    /// of source rows, for merging repeated rows of a sparse gradient).
    /// </summary>
    public static void ReduceRows(RowGroups groups, int slots, int dim, float* coefficient, float* source, float* rows, int threads,
                                  int? sourceStride = null)
    {
        long stride = sourceStride ?? dim;
        KernelThreads.For(groups.RowCount, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var order = groups.Order;
            var starts = groups.Starts;
            for (int g = start; g < end; g++)
            {
                float* row = rows + (long)g * dim;
                int first = starts[g], last = starts[g + 1];
                int p = order[first];
                VectorMath.Scale(row, coefficient is null ? 1f : coefficient[p], source + (p / slots) * stride, dim);
                for (int i = first + 1; i < last; i++)
                {
                    p = order[i];
                    VectorMath.Axpy(row, coefficient is null ? 1f : coefficient[p], source + (p / slots) * stride, dim);
                }
            }
        });
    }

    static void PrefetchRows(Batch b, long id)
    {
        VectorMath.Prefetch(b.Down + id * b.Dim, b.Dim);
        VectorMath.Prefetch(b.Up + id * b.Dim, b.Dim);
    }
}
