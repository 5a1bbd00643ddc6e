using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// Row-sparse gradients of the expert tables: sparse COO tensors [N, d] with one sparse dimension, i.e. a list
/// of row ids [1, U] and the rows [U, d]. The fused kernel's gradients list each touched row once, ascending
/// ("coalesced"); autograd's sum of several such gradients concatenates them, so users of the rows call
/// <see cref="Coalesce"/> first. (TorchSharp has no binding of torch's coalesce, and ours is deterministic.)
/// </summary>
public static class SparseRows
{
    /// <summary>Whether the sparse gradient lists every row at most once, in ascending order.</summary>
    public static unsafe bool IsCoalesced(Tensor gradient)
    {
        using var ids = gradient.SparseIndices.contiguous();
        long* p = TensorMemory.Pointer<long>(ids);
        long count = ids.numel();
        for (long i = 1; i < count; i++)
            if (p[i] <= p[i - 1]) return false;
        return true;
    }

    /// <summary>
    /// The gradient with repeated rows summed (in the order they appear) and ids ascending; the same tensor
    /// when it already is coalesced.
    /// </summary>
    public static unsafe Tensor Coalesce(Tensor gradient, int? threads = null)
    {
        if (!gradient.is_sparse || gradient.dim() != 2)
            throw new ArgumentException("SparseRows.Coalesce takes a sparse COO tensor [N, d] with one sparse dimension");
        if (IsCoalesced(gradient)) return gradient;
        using var scope = NewDisposeScope();
        var ids = gradient.SparseIndices.contiguous();                        // [1, nnz]
        var values = gradient.SparseValues.contiguous();                      // [nnz, d]
        long N = gradient.shape[0], d = gradient.shape[1];
        using var groups = RowGroups.Build(TensorMemory.Pointer<long>(ids), (int)ids.numel(), N);
        var rows = empty(1, groups.RowCount, dtype: ScalarType.Int64);       // [1, U]
        groups.Rows.CopyTo(new Span<long>(TensorMemory.Pointer<long>(rows), groups.RowCount));
        var sums = empty(groups.RowCount, d);                                 // [U, d]
        groups.Reduce(1, (int)d, null, TensorMemory.Pointer<float>(values),
                                      TensorMemory.Pointer<float>(sums), threads ?? KernelThreads.Default);
        return scope.MoveToOuter(sparse_coo_tensor(rows, sums, [N, d]));
    }
}
