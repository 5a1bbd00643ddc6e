using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// Product-key retrieval (Lample et al. 2019; DESIGN.md "The algorithm", steps 2-3), shared by PEER and PKM. Finds, for every
/// query and head, the exact top-k of the N = n² full keys [C_a ; C'_b] at the cost of 2n + k² scores.
/// </summary>
public static class ProductKeys
{
    /// <summary>
    /// Scores and ids of the top-k experts per query and head.
    /// </summary>
    /// <param name="queries">[M, h, d_key]: one query per token and head.</param>
    /// <param name="subKeys">[2, n, d_key/2]: C = subKeys[0] (first half of the query), C' = subKeys[1].</param>
    /// <param name="topK">k.</param>
    /// <returns>scores [M, h, k] (differentiable in queries and sub-keys), ids [M, h, k] = a · n + b, best first.</returns>
    public static (Tensor Scores, Tensor Ids) Retrieve(Tensor queries, Tensor subKeys, int topK)
    {
        using var scope = NewDisposeScope();
        var n = subKeys.shape[1];
        var halves = queries.chunk(2, dim: -1);                      // 2 × [M, h, d_key/2]
        // Step 2: score each half against its own sub-key set, keep the best k of each.
        var (best1, index1) = BatchInvariance.TimesTransposed(halves[0], subKeys[0]).topk(topK, dim: -1);   // [M, h, k]
        var (best2, index2) = BatchInvariance.TimesTransposed(halves[1], subKeys[1]).topk(topK, dim: -1);   // [M, h, k]
        // Step 3: the k² candidates (a, b) score s1[a] + s2[b]; the exact top-k is among them.
        var candidates = (best1.unsqueeze(-1) + best2.unsqueeze(-2)).flatten(-2);      // [M, h, k²]
        var (scores, position) = candidates.topk(topK, dim: -1);                      // [M, h, k]
        var a = index1.gather(-1, position.div(topK, rounding_mode: RoundingMode.floor));
        var b = index2.gather(-1, position.remainder(topK));
        var ids = a * n + b;
        scope.MoveToOuter(scores, ids);
        return (scores, ids);
    }
}
