using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// Product-key retrieval with the contract of <see cref="ProductKeys.Retrieve"/> (its tensor-op
/// version stays the oracle), as one autograd function. The forward scores the sub-keys with one matrix
/// product per half and block of queries, so the [M, h, n] score tensors never exist whole, and selects in
/// C# (<see cref="FusedProductKeysKernel"/>); the backward sends each score's gradient only to its two
/// sub-keys and its query, instead of through dense [M, h, n] gradients and two more matrix products.
/// Nothing is N-sized. CPU and float32 only.
/// </summary>
public static class FusedProductKeys
{
    /// <summary>Query rows (tokens × heads) scored per block: 1024 rows of n = 1024 scores are 4 MB per half.</summary>
    const int BlockRows = 1024;

    /// <inheritdoc cref="ProductKeys.Retrieve"/>
    /// <param name="queries">[M, h, d_key]: one query per token and head.</param>
    /// <param name="subKeys">[2, n, d_key/2]: C = subKeys[0] (first half of the query), C' = subKeys[1].</param>
    /// <param name="topK">k.</param>
    /// <param name="threads">Threads of the C# kernels; null: <see cref="KernelThreads.Default"/>.</param>
    public static (Tensor Scores, Tensor Ids) Retrieve(Tensor queries, Tensor subKeys, int topK, int? threads = null)
    {
        using var scope = NewDisposeScope();
        if (queries.dim() != 3 || subKeys.dim() != 3 || subKeys.shape[0] != 2 || queries.shape[2] != 2 * subKeys.shape[2])
            throw new ArgumentException($"fused retrieval: queries [{string.Join(", ", queries.shape)}] and sub-keys [{string.Join(", ", subKeys.shape)}] do not fit");
        if (topK < 1 || topK > subKeys.shape[1])
            throw new ArgumentException($"fused retrieval: top-k {topK} must be between 1 and n = {subKeys.shape[1]}");
        if (queries.dtype != ScalarType.Float32 || subKeys.dtype != ScalarType.Float32)
            throw new ArgumentException("fused retrieval takes float32 queries and sub-keys");
        var selection = new Selection();
        var scores = RetrievalFunction.apply(queries.contiguous(), subKeys.contiguous(), topK, threads ?? KernelThreads.Default, selection);
        return scope.MoveToOuter(scores, selection.Ids!);
    }

    /// <summary>
    /// Carries the ids out of the forward: they are not differentiable, and a second output of a TorchSharp
    /// function would need a materialised zero gradient in the backward, built from a tensor our dispose
    /// scopes have already freed.
    /// </summary>
    sealed class Selection
    {
        public Tensor? Ids;
    }

    /// <summary>The autograd node; a stateless singleton (everything per call travels in the context).</summary>
    sealed unsafe class RetrievalFunction : autograd.SingleTensorFunction<RetrievalFunction>
    {
        public override string Name => "FusedProductKeys";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (queries, subKeys, topK, threads) = ((Tensor)vars[0], (Tensor)vars[1], (int)vars[2], (int)vars[3]);
            var selection = (Selection)vars[4];
            using var scope = NewDisposeScope();
            long M = queries.shape[0], h = queries.shape[1], dk = queries.shape[2], n = subKeys.shape[1], half = dk / 2;
            long rows = M * h;
            var scores = empty(M, h, topK);                                       // [M, h, k]
            var ids = empty(M, h, topK, dtype: ScalarType.Int64);                 // [M, h, k]
            var flat = queries.view(rows, dk);                                    // [M·h, d_key]
            float* pScores = TensorMemory.Pointer<float>(scores);
            long* pIds = TensorMemory.Pointer<long>(ids);
            for (long start = 0; start < rows; start += BlockRows)
            {
                using var block = NewDisposeScope();
                long count = Math.Min(BlockRows, rows - start);
                var q = flat.narrow(0, start, count);                             // [rows, d_key]
                var s1 = BatchInvariance.TimesTransposed(q.narrow(1, 0, half), subKeys[0]).contiguous();      // [rows, n]: step 2, first half
                var s2 = BatchInvariance.TimesTransposed(q.narrow(1, half, half), subKeys[1]).contiguous();   // [rows, n]: step 2, second half
                FusedProductKeysKernel.Select(TensorMemory.Pointer<float>(s1), TensorMemory.Pointer<float>(s2), (int)count, (int)n, topK,
                                              pScores + start * topK, pIds + start * topK, threads);
            }
            ctx.save_for_backward([queries, subKeys, ids]);
            ctx.save_data("threads", threads);
            ctx.save_data("needs", new[] { queries.requires_grad, subKeys.requires_grad });
            selection.Ids = scope.MoveToOuter(ids);
            return scope.MoveToOuter(scores);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradScores) =>
            BackwardGuard.Run("fused product-key", () => Backward(ctx, gradScores));

        static List<Tensor> Backward(autograd.AutogradContext ctx, Tensor gradScores)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (queries, subKeys, ids) = (saved[0], saved[1], saved[2]);
            var threads = (int)ctx.get_data("threads");
            var needs = (bool[])ctx.get_data("needs");
            var dScores = gradScores.contiguous();                                // [M, h, k]
            long M = queries.shape[0], h = queries.shape[1], dk = queries.shape[2], n = subKeys.shape[1], k = ids.shape[2];
            int rows = (int)(M * h), half = (int)(dk / 2);
            float* pScores = TensorMemory.Pointer<float>(dScores), pQueries = TensorMemory.Pointer<float>(queries);

            Tensor? dQueries = null, dSubKeys = null;
            if (needs[0])
            {
                dQueries = empty_like(queries);                                   // [M, h, d_key]
                FusedProductKeysKernel.QueryGradient(pScores, TensorMemory.Pointer<long>(ids), TensorMemory.Pointer<float>(subKeys),
                                                     rows, (int)n, (int)k, (int)dk, TensorMemory.Pointer<float>(dQueries), threads);
            }
            if (needs[1])
            {
                // dC[a] = Σ ds·q1 and dC'[b] = Σ ds·q2 over the selections of each sub-key, reduced in a fixed order.
                dSubKeys = zeros_like(subKeys);                                   // [2, n, d_key/2]
                var halves = new[] { ids.div(n, rounding_mode: RoundingMode.floor), ids.remainder(n) };   // a, b: [M, h, k]
                for (int j = 0; j < 2; j++)
                {
                    using var groups = RowGroups.Build(TensorMemory.Pointer<long>(halves[j]), (int)halves[j].numel(), n);
                    var sums = empty(groups.RowCount, half);                      // [touched sub-keys, d_key/2]
                    float* pSums = TensorMemory.Pointer<float>(sums);
                    groups.Reduce((int)k, half, pScores, pQueries + j * half, pSums, threads, sourceStride: (int)dk);
                    float* destination = TensorMemory.Pointer<float>(dSubKeys) + (long)j * n * half;
                    var touched = groups.Rows;
                    for (int g = 0; g < touched.Length; g++)
                        new Span<float>(pSums + (long)g * half, half).CopyTo(new Span<float>(destination + touched[g] * half, half));
                }
            }
            var grads = new List<Tensor> { dQueries!, dSubKeys!, null!, null!, null! };
            scope.MoveToOuter(grads.Where(g => g is not null));
            return grads;
        }
    }
}
