using System.Buffers;

namespace PeerSharp.Kernels;

/// <summary>
/// One table's optimizer update, applied to each gradient row as soon as a backward has reduced it, instead of
/// storing the rows as a gradient (docs/SPARSE_UPDATES.md, "Update in the backward"). Per touched row, in order:
/// skip it when it is frozen; take Σ_j g_j² of the gradient as it came (the row's share of the gradient norm);
/// skip a non-finite row (the caller sees a non-finite norm and stops); multiply g by the clip scale; then the row
/// update of <see cref="SparseAdamWKernel"/> (full moments) or <see cref="RowWiseAdamWKernel"/>, the same code
/// the stored-gradient step runs. Rows are independent, so workers may apply them in any order; the sums of
/// squares are kept per row and added in row order by <see cref="SumOfSquares"/>, so the norm does not depend
/// on the thread count.
/// </summary>
internal sealed unsafe class TableRowUpdate : IDisposable
{
    readonly SparseAdamWKernel.Rule _rule;
    readonly float _gradientScale;
    readonly float* _table, _m, _v;
    readonly ushort* _mBf16;
    readonly bool _fullMoments;
    readonly bool* _frozen;
    double[]? _squares;

    /// <param name="rule">The step's constants, its decay factor that of this table.</param>
    /// <param name="gradientScale">Factor on every gradient row before the update (the clip scale).</param>
    /// <param name="table">The table p [N, d].</param>
    /// <param name="fullMoments">m and v are [N, d] (AdamW); otherwise v is [N] and m is [N, d] float32, bfloat16 or absent.</param>
    /// <param name="m">First moments, float32, or null.</param>
    /// <param name="mBf16">First moments, bfloat16, or null.</param>
    /// <param name="v">Second moments.</param>
    /// <param name="frozen">[N] rows never to update, or null.</param>
    /// <param name="dim">d.</param>
    /// <param name="rowCount">Touched rows the backward will hand over (group indices 0..rowCount-1).</param>
    public TableRowUpdate(SparseAdamWKernel.Rule rule, float gradientScale, float* table, bool fullMoments, float* m, ushort* mBf16,
                          float* v, bool* frozen, int dim, int rowCount)
    {
        (_rule, _gradientScale, _fullMoments, Dim) = (rule, gradientScale, fullMoments, dim);
        _table = table;
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
        if (_fullMoments) SparseAdamWKernel.UpdateRow(_rule, _table + row * d, _m + row * d, _v + row * d, gradient, d);
        else RowWiseAdamWKernel.UpdateRow(_rule, row, gradient, sumOfSquares, d, _table, _m, _mBf16, _v);
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
