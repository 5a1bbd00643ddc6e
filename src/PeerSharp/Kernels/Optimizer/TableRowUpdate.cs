using System.Buffers;

namespace PeerSharp.Kernels;

/// <summary>
/// One table's optimizer update, applied to each gradient row as soon as a backward has reduced it, instead of
/// storing the rows as a gradient (docs/SPARSE_UPDATES.md, "Update in the backward"). Per touched row, in order:
/// skip it when it is frozen; take Σ_j g_j² of the gradient as it came (the row's share of the gradient norm);
/// skip a non-finite row (the caller sees a non-finite norm and stops); multiply g by the clip scale; then the row
/// update of <see cref="SparseAdamWKernel"/> (full moments) or <see cref="RowWiseAdamWKernel"/>, the same code
/// the stored-gradient step runs. A bfloat16 table's row is widened to float32, updated, and rounded back
/// stochastically (<see cref="BFloat16Math.RoundStochastic"/>, seeded per row). Rows are independent, so workers
/// may apply them in any order; the sums of squares are kept per row and added in row order by
/// <see cref="SumOfSquares"/>, so the norm does not depend on the thread count.
/// </summary>
internal sealed unsafe class TableRowUpdate : IRowConsumer, IDisposable
{
    readonly SparseAdamWKernel.Rule _rule;
    readonly float _gradientScale;
    readonly float* _table, _m, _v;
    readonly ushort* _tableBf16, _mBf16;
    readonly ulong _roundingSeed;
    readonly bool _fullMoments;
    readonly bool* _frozen;
    double[]? _squares;

    /// <param name="rule">The step's constants, its decay factor that of this table.</param>
    /// <param name="gradientScale">Factor on every gradient row before the update (the clip scale).</param>
    /// <param name="table">The table p [N, d] in float32, or null.</param>
    /// <param name="tableBf16">The table p [N, d] in bfloat16, or null.</param>
    /// <param name="roundingSeed">Seed of the stochastic rounding of a bfloat16 table's rows: unique per step and table.</param>
    /// <param name="fullMoments">m and v are [N, d] (AdamW); otherwise v is [N] and m is [N, d] float32, bfloat16 or absent.</param>
    /// <param name="m">First moments, float32, or null.</param>
    /// <param name="mBf16">First moments, bfloat16, or null.</param>
    /// <param name="v">Second moments.</param>
    /// <param name="frozen">[N] rows never to update, or null.</param>
    /// <param name="dim">d.</param>
    /// <param name="rowCount">Touched rows the backward will hand over (group indices 0..rowCount-1).</param>
    public TableRowUpdate(SparseAdamWKernel.Rule rule, float gradientScale, float* table, ushort* tableBf16, ulong roundingSeed, bool fullMoments,
                          float* m, ushort* mBf16, float* v, bool* frozen, int dim, int rowCount)
    {
        if ((table is null) == (tableBf16 is null)) throw new ArgumentException("a table update needs exactly one of a float32 and a bfloat16 table");
        (_rule, _gradientScale, _fullMoments, Dim) = (rule, gradientScale, fullMoments, dim);
        _table = table;
        _tableBf16 = tableBf16;
        _roundingSeed = roundingSeed;
        _m = m;
        _v = v;
        _mBf16 = mBf16;
        _frozen = frozen;
        _squares = ArrayPool<double>.Shared.Rent(Math.Max(1, rowCount));
        RowCount = rowCount;
    }

    /// <summary>d, the width of a row.</summary>
    public int Dim { get; }

    /// <summary>Touched rows of this backward.</summary>
    public int RowCount { get; }

    /// <summary>
    /// Applies the update to table row <paramref name="row"/>, the <paramref name="group"/>-th touched row, with
    /// its gradient <paramref name="gradient"/> [d] (scratch: scaled in place).
    /// </summary>
    public void Apply(int group, long row, float* gradient)
    {
        int d = Dim;
        if (_frozen is not null && _frozen[row])
        {
            _squares![group] = 0;
            return;
        }
        float sumOfSquares = VectorMath.Dot(gradient, gradient, d);
        _squares![group] = sumOfSquares;
        if (!float.IsFinite(sumOfSquares)) return;
        if (_gradientScale != 1)
        {
            VectorMath.Scale(gradient, _gradientScale, gradient, d);
            sumOfSquares = VectorMath.Dot(gradient, gradient, d);
        }
        float* p = _table is not null ? _table + row * d : Widened(_tableBf16 + row * d, d);
        if (_fullMoments) SparseAdamWKernel.UpdateRow(_rule, p, _m + row * d, _v + row * d, gradient, d);
        else RowWiseAdamWKernel.UpdateRow(_rule, gradient, sumOfSquares, d, p, _m is null ? null : _m + row * d,
                                          _mBf16 is null ? null : _mBf16 + row * d, ref _v[row]);
        if (_tableBf16 is not null) BFloat16Math.RoundStochastic(p, _tableBf16 + row * d, d, BFloat16Math.RowSeed(_roundingSeed, row));
    }

    [ThreadStatic]
    static float[]? _row;   // a worker's float32 copy of the bfloat16 row it updates

    /// <summary>The bfloat16 row at <paramref name="row"/> [d] in this thread's float32 scratch.</summary>
    static float* Widened(ushort* row, int d)
    {
        if (_row is null || _row.Length < d) _row = GC.AllocateUninitializedArray<float>(d, pinned: true);
        var scratch = (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _row[0]);
        BFloat16Math.Widen(row, scratch, d);
        return scratch;
    }

    /// <summary>Σ over the rows applied of Σ_j g_j² (before scaling), added in row order; frozen rows count 0.</summary>
    public double SumOfSquares()
    {
        double sum = 0;
        for (int g = 0; g < RowCount; g++) sum += _squares![g];
        return sum;
    }

    /// <summary>Returns the scratch to its pool.</summary>
    public void Dispose()
    {
        if (_squares is not null) ArrayPool<double>.Shared.Return(_squares);
        _squares = null;
    }
}
