using System.Runtime.CompilerServices;

namespace PeerSharp.Kernels;

/// <summary>
/// The fused PEER expert step over raw float32 memory (llm.c style: a forward and a backward over plain
/// arrays, next to the tensor-op reference <see cref="PlainExperts"/>). With S = h·k selections per token:
///
///   forward   a[m,s] = u_id · x_m;   y_m = Σ_s g[m,s] · σ(a[m,s]) · v_id
///   backward  t = v_id · dy_m;   dg[m,s] = σ(a) · t;   c_u = g · t · σ'(a);   c_v = g · σ(a)
///             dU[id] = Σ_(m,s)→id c_u · x_m;   dV[id] = Σ_(m,s)→id c_v · dy_m;   dx_m = Σ_s c_u · u_id
///
/// The forward runs over tokens (threads over token blocks, each owning its rows of y). The backward first
/// runs over the touched rows in id order (<see cref="RowGroups"/>; each worker owns its rows of dU, dV and
/// the dg and c_u entries of their selections), then over tokens for dx. Every sum has a fixed order, so
/// the results do not depend on the thread count; nothing is ever [tokens, h, k, d_model] or N-sized.
/// The tables are float32 or bfloat16 (<see cref="ExpertTableStorage"/>): each loop is generic over how it reads
/// a row's elements (<see cref="IElementFormat"/>), and every sum is float32 either way.
/// </summary>
internal static unsafe class FusedExpertsKernel
{
    const int TokenBlock = 8;      // tokens per work item
    const int RowBlock = 64;       // gradient rows per work item
    const int PrefetchAhead = 2;   // selections whose rows are requested before they are needed

    /// <summary>Pointers and sizes of one batch: x [M, d], ids and gates [M, S], down and up [N, d] stored as <paramref name="storage"/>.</summary>
    internal readonly struct Batch(float* x, long* ids, float* gates, void* down, void* up, ExpertTableStorage storage, int tokens, int slots, int dim)
    {
        public readonly float* X = x, Gates = gates;
        public readonly void* Down = down, Up = up;
        public readonly ExpertTableStorage Storage = storage;
        public readonly long* Ids = ids;
        public readonly int Tokens = tokens, Slots = slots, Dim = dim;
    }

    /// <summary>y [M, d] and the pre-activations a [M, S] (kept for the backward).</summary>
    public static void Forward(Batch b, float* preActivations, float* y, ExpertActivation activation, int threads)
    {
        if (b.Storage == ExpertTableStorage.BFloat16) Forward<BFloat16Elements>(b, preActivations, y, activation, threads);
        else Forward<Float32Elements>(b, preActivations, y, activation, threads);
    }

    static void Forward<TRows>(Batch b, float* preActivations, float* y, ExpertActivation activation, int threads) where TRows : struct, IElementFormat
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
                for (int s = 0; s < Math.Min(PrefetchAhead, S); s++) PrefetchRows<TRows>(b, ids[s]);
                for (int s = 0; s < S; s++)
                {
                    if (s + PrefetchAhead < S) PrefetchRows<TRows>(b, ids[s + PrefetchAhead]);
                    long id = ids[s];
                    float a = VectorMath.Dot<TRows>(Row<TRows>(b.Down, id, d), xm, d);
                    preActivations[(long)m * S + s] = a;
                    float weight = b.Gates[(long)m * S + s] * ExpertNonlinearity.Value(a, activation);
                    VectorMath.Axpy<TRows>(ym, weight, Row<TRows>(b.Up, id, d), d);
                }
            }
        });
    }

    /// <summary>
    /// First backward phase, per touched row g (ascending id, one worker per row): reads v_id once and, for each
    /// of its selections p in ascending order (token m = p / S), t = v_id · dy_m, dg[p] = σ(a)·t and
    /// c_u[p] = g·t·σ'(a); sums dU[g] = Σ c_u · x_m and dV[g] = Σ g·σ(a) · dy_m. Any of dGates, coefficientU,
    /// dDown and dUp may be null when not wanted. Walking the table in id order reads its rows in ascending
    /// address order, where the hardware prefetchers help; only the token phase reads rows at random.
    /// With <paramref name="upUpdate"/>, dV[g] goes to a scratch row and is applied to v_id at once (dUp is then
    /// unused): no selection of another row reads v_id, so its update cannot change their results.
    /// </summary>
    public static void BackwardRows(Batch b, RowGroups groups, float* preActivations, float* dy, float* dGates, float* coefficientU,
                                    float* dDown, float* dUp, TableRowUpdate? upUpdate, ExpertActivation activation, int threads)
    {
        if (b.Storage == ExpertTableStorage.BFloat16)
            BackwardRows<BFloat16Elements>(b, groups, preActivations, dy, dGates, coefficientU, dDown, dUp, upUpdate, activation, threads);
        else
            BackwardRows<Float32Elements>(b, groups, preActivations, dy, dGates, coefficientU, dDown, dUp, upUpdate, activation, threads);
    }

    static void BackwardRows<TRows>(Batch b, RowGroups groups, float* preActivations, float* dy, float* dGates, float* coefficientU,
                                    float* dDown, float* dUp, TableRowUpdate? upUpdate, ExpertActivation activation, int threads)
        where TRows : struct, IElementFormat
    {
        KernelThreads.For(groups.RowCount, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int d = b.Dim, S = b.Slots;
            var order = groups.Order;
            var starts = groups.Starts;
            var rows = groups.Rows;
            var scratch = upUpdate is null ? null : GC.AllocateUninitializedArray<float>(d, pinned: true);   // dV of one row
            for (int g = start; g < end; g++)
            {
                if (g + PrefetchAhead < end) Prefetch<TRows>(b.Up, rows[g + PrefetchAhead], d);
                long v = rows[g];
                float* du = dDown is null ? null : dDown + (long)g * d;
                float* dv = scratch is not null ? (float*)Unsafe.AsPointer(ref scratch[0]) : dUp is null ? null : dUp + (long)g * d;
                for (int i = starts[g]; i < starts[g + 1]; i++)
                {
                    int p = order[i];
                    long m = p / S;
                    float* dym = dy + m * d;
                    float t = VectorMath.Dot<TRows>(Row<TRows>(b.Up, v, d), dym, d);
                    var (value, derivative) = ExpertNonlinearity.Evaluate(preActivations[p], activation);
                    float gate = b.Gates[p];
                    float cu = gate * t * derivative, cv = gate * value;
                    if (dGates is not null) dGates[p] = value * t;
                    if (coefficientU is not null) coefficientU[p] = cu;
                    bool first = i == starts[g];
                    if (du is not null)
                    {
                        if (first) VectorMath.Scale(du, cu, b.X + m * d, d);
                        else VectorMath.Axpy(du, cu, b.X + m * d, d);
                    }
                    if (dv is not null)
                    {
                        if (first) VectorMath.Scale(dv, cv, dym, d);
                        else VectorMath.Axpy(dv, cv, dym, d);
                    }
                }
                upUpdate?.Apply(g, rows[g], dv);
            }
        });
    }

    /// <summary>Second backward phase, per token: dx_m = Σ_s c_u[m, s] · u_id, from the coefficients of the first.</summary>
    public static void BackwardInputs(Batch b, float* coefficientU, float* dx, int threads)
    {
        if (b.Storage == ExpertTableStorage.BFloat16) BackwardInputs<BFloat16Elements>(b, coefficientU, dx, threads);
        else BackwardInputs<Float32Elements>(b, coefficientU, dx, threads);
    }

    static void BackwardInputs<TRows>(Batch b, float* coefficientU, float* dx, int threads) where TRows : struct, IElementFormat
    {
        KernelThreads.For(b.Tokens, TokenBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int d = b.Dim, S = b.Slots;
            for (int m = start; m < end; m++)
            {
                float* dxm = dx + (long)m * d;
                new Span<float>(dxm, d).Clear();
                long* ids = b.Ids + (long)m * S;
                for (int s = 0; s < Math.Min(PrefetchAhead, S); s++) Prefetch<TRows>(b.Down, ids[s], d);
                for (int s = 0; s < S; s++)
                {
                    if (s + PrefetchAhead < S) Prefetch<TRows>(b.Down, ids[s + PrefetchAhead], d);
                    VectorMath.Axpy<TRows>(dxm, coefficientU[(long)m * S + s], Row<TRows>(b.Down, ids[s], d), d);
                }
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchRows<TRows>(Batch b, long id) where TRows : struct, IElementFormat
    {
        Prefetch<TRows>(b.Down, id, b.Dim);
        Prefetch<TRows>(b.Up, id, b.Dim);
    }

    /// <summary>The first element of row <paramref name="row"/> of a table [N, d] stored as <typeparamref name="TRows"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static byte* Row<TRows>(void* table, long row, int d) where TRows : struct, IElementFormat => (byte*)table + row * d * TRows.Size;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Prefetch<TRows>(void* table, long row, int d) where TRows : struct, IElementFormat =>
        VectorMath.PrefetchBytes(Row<TRows>(table, row, d), d * TRows.Size);
}
