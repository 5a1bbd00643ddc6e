using System.Runtime.CompilerServices;
using System.Buffers;

namespace PeerSharp.Kernels;

/// <summary>
/// Positions 0..count-1 grouped by the table row each one touches: the distinct rows in ascending order and,
/// for each, its positions in ascending order. Gradient rows are then reduced one row per worker in that
/// fixed order, which makes them deterministic and independent of the thread count, with no N-sized scratch.
/// Built by a stable LSD radix sort (11-bit digits) in O(count · ⌈log₂ N / 11⌉).
/// </summary>
internal sealed unsafe class RowGroups : IDisposable
{
    const int DigitBits = 11;
    const int RowBlock = 64;   // rows per work item of Reduce

    int[]? _order;
    long[]? _rows;
    int[]? _starts;

    RowGroups(int[] order, long[] rows, int[] starts, int count, int rowCount)
    {
        (_order, _rows, _starts, Count, RowCount) = (order, rows, starts, count, rowCount);
    }

    /// <summary>Number of grouped positions.</summary>
    public int Count { get; }

    /// <summary>Number of distinct rows.</summary>
    public int RowCount { get; }

    /// <summary>The distinct rows, ascending.</summary>
    public ReadOnlySpan<long> Rows => _rows.AsSpan(0, RowCount);

    /// <summary>Positions sorted by row; row g owns Order[Starts[g] .. Starts[g + 1]).</summary>
    public ReadOnlySpan<int> Order => _order.AsSpan(0, Count);

    /// <summary>Group boundaries, RowCount + 1 entries.</summary>
    public ReadOnlySpan<int> Starts => _starts.AsSpan(0, RowCount + 1);

    /// <summary>Groups the positions of <paramref name="ids"/> (each in [0, rowLimit)) by id.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowGroups Build(long* ids, int count, long rowLimit)
    {
        var pool = ArrayPool<int>.Shared;
        var keys = pool.Rent(Math.Max(1, count));
        var order = pool.Rent(Math.Max(1, count));
        var keysSwap = pool.Rent(Math.Max(1, count));
        var orderSwap = pool.Rent(Math.Max(1, count));
        try
        {
            for (int i = 0; i < count; i++)
            {
                keys[i] = (int)ids[i];
                order[i] = i;
            }
            int bits = 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)Math.Max(1, rowLimit - 1));
            Span<int> offsets = stackalloc int[1 << DigitBits];
            for (int shift = 0; shift < bits; shift += DigitBits)
            {
                // Counting sort on one digit; stable, so earlier digits' order (and finally position order) holds.
                offsets.Clear();
                int mask = (1 << DigitBits) - 1;
                for (int i = 0; i < count; i++) offsets[(keys[i] >> shift) & mask]++;
                int sum = 0;
                for (int b = 0; b < offsets.Length; b++) (offsets[b], sum) = (sum, sum + offsets[b]);
                for (int i = 0; i < count; i++)
                {
                    int slot = offsets[(keys[i] >> shift) & mask]++;
                    keysSwap[slot] = keys[i];
                    orderSwap[slot] = order[i];
                }
                (keys, keysSwap) = (keysSwap, keys);
                (order, orderSwap) = (orderSwap, order);
            }

            int distinct = 0;
            for (int i = 0; i < count; i++)
                if (i == 0 || keys[i] != keys[i - 1]) distinct++;
            var rows = ArrayPool<long>.Shared.Rent(Math.Max(1, distinct));
            var starts = pool.Rent(distinct + 1);
            int g = 0;
            for (int i = 0; i < count; i++)
            {
                if (i > 0 && keys[i] == keys[i - 1]) continue;
                rows[g] = keys[i];
                starts[g++] = i;
            }
            starts[distinct] = count;
            var groups = new RowGroups(order, rows, starts, count, distinct);
            order = null!;
            return groups;
        }
        finally
        {
            pool.Return(keys);
            pool.Return(keysSwap);
            pool.Return(orderSwap);
            if (order is not null) pool.Return(order);
        }
    }

    /// <summary>
    /// Row sums in a fixed order: for each touched row g (ascending id), rows[g] = Σ coefficient[p] · source[token(p)]
    /// over the row's positions p in ascending order, token(p) = p / slots. source is [M, d] with rows
    /// sourceStride floats apart (dim when null). A null coefficient means 1 (plain sums of source rows, for
    /// merging repeated rows of a sparse gradient). Used for sub-key gradients (<see cref="FusedProductKeys"/>), by
    /// <see cref="SparseRows"/> and for PEER's u-table gradient when it is applied in the backward: with
    /// <paramref name="update"/>, each row is reduced into a scratch row and applied at once, and rows is unused.
    /// </summary>
    public void Reduce(int slots, int dim, float* coefficient, float* source, float* rows, int threads,
                                  int? sourceStride = null, IRowConsumer? update = null)
    {
        long stride = sourceStride ?? dim;
        KernelThreads.For(RowCount, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var order = Order;
            var starts = Starts;
            var tableRows = Rows;
            var scratch = update is null ? null : GC.AllocateUninitializedArray<float>(dim, pinned: true);   // one gradient row
            for (int g = start; g < end; g++)
            {
                float* row = scratch is not null ? (float*)Unsafe.AsPointer(ref scratch[0]) : rows + (long)g * dim;
                int first = starts[g], last = starts[g + 1];
                int p = order[first];
                VectorMath.Scale(row, coefficient is null ? 1f : coefficient[p], source + (p / slots) * stride, dim);
                for (int i = first + 1; i < last; i++)
                {
                    p = order[i];
                    VectorMath.Axpy(row, coefficient is null ? 1f : coefficient[p], source + (p / slots) * stride, dim);
                }
                update?.Apply(g, tableRows[g], row);
            }
        });
    }

    /// <summary>Returns the scratch arrays to their pools.</summary>
    public void Dispose()
    {
        if (_order is not null) ArrayPool<int>.Shared.Return(_order);
        if (_starts is not null) ArrayPool<int>.Shared.Return(_starts);
        if (_rows is not null) ArrayPool<long>.Shared.Return(_rows);
        (_order, _starts, _rows) = (null, null, null);
    }
}
