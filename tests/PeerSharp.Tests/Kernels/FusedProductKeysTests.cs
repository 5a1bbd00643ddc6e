using PeerSharp.Tests.Layers;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// Fused retrieval against its oracle, the tensor-op ProductKeys.Retrieve.
public class FusedProductKeysTests
{
    static (Tensor Queries, Tensor SubKeys, Tensor R) Random(long seed, int tokens, int heads, int subKeys, int keyDim, int topK)
    {
        var g = new Generator((ulong)seed);
        return (randn(tokens, heads, keyDim, generator: g), randn(2, subKeys, keyDim / 2, generator: g), randn(tokens, heads, topK, generator: g));
    }

    static double RelativeError(Tensor actual, Tensor expected) =>
        (actual - expected).norm().item<float>() / Math.Max(1e-12, expected.norm().item<float>());

    [Theory]
    [InlineData(5, 2, 7, 6, 3)]
    [InlineData(300, 4, 64, 16, 16)]   // 1200 query rows: more than one scoring block
    [InlineData(9, 3, 16, 8, 1)]       // k = 1
    [InlineData(4, 2, 5, 4, 5)]        // k = n: every sub-key survives step 2
    public void MatchesTensorOpsInIdsScoresAndGradients(int tokens, int heads, int subKeys, int keyDim, int topK)
    {
        using var scope = NewDisposeScope();
        var (queries, keys, r) = Random(tokens + subKeys, tokens, heads, subKeys, keyDim, topK);
        (Tensor Scores, Tensor Ids, Tensor DQueries, Tensor DKeys) Run(bool fused)
        {
            var q = queries.clone().requires_grad_();
            var k = keys.clone().requires_grad_();
            var (scores, ids) = fused ? FusedProductKeys.Retrieve(q, k, topK) : ProductKeys.Retrieve(q, k, topK);
            (scores.softmax(-1) * r).sum().backward();
            return (scores.detach(), ids, q.grad!, k.grad!);
        }
        var expected = Run(fused: false);
        var actual = Run(fused: true);
        Assert.True(actual.Ids.eq(expected.Ids).all().item<bool>(), "different experts selected");
        Assert.True(RelativeError(actual.Scores, expected.Scores) < 1e-5);
        Assert.True(RelativeError(actual.DQueries, expected.DQueries) < 1e-4);
        Assert.True(RelativeError(actual.DKeys, expected.DKeys) < 1e-4);
    }

    [Fact]
    public void SelectsTheExactTopKOfAllFullKeys()
    {
        using var scope = NewDisposeScope();
        int n = 12, topK = 5, keyDim = 6;
        var (queries, keys, _) = Random(3, 40, 2, n, keyDim, topK);
        var (scores, ids) = FusedProductKeys.Retrieve(queries, keys, topK);
        // Brute force over the N = n² keys [C_a ; C'_b], id = a·n + b.
        var full = FullKeys.Of(keys);                                                  // [N, d_key]
        var (best, bestIds) = queries.matmul(full.t()).topk(topK, dim: -1);
        Assert.True(bestIds.eq(ids).all().item<bool>());
        Assert.True(best.allclose(scores, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void OneAndTwoThreadsGiveIdenticalResults()
    {
        using var scope = NewDisposeScope();
        var (queries, keys, r) = Random(8, 200, 4, 32, 8, 4);
        Tensor[] Run(int threads)
        {
            var q = queries.clone().requires_grad_();
            var k = keys.clone().requires_grad_();
            var (scores, ids) = FusedProductKeys.Retrieve(q, k, 4, threads);
            (scores * r).sum().backward();
            return [scores.detach(), ids, q.grad!, k.grad!];
        }
        var one = Run(1);
        var two = Run(2);
        for (int i = 0; i < one.Length; i++) Assert.True(one[i].eq(two[i]).all().item<bool>(), $"output {i} differs");
    }
    /// <summary>
    /// The selection of step 2 against a stable sort: the k first in the order (score descending, position ascending),
    /// on rows with many ties (scores drawn from a few values), rows the floor pass covers and rows too short for it,
    /// a row whose best scores all sit in one range, and rows with infinite scores.
    /// </summary>
    [Theory]
    [InlineData(1024, 16)]
    [InlineData(1024, 1)]
    [InlineData(1000, 32)]   // n not a multiple of the ranges: a tail outside them
    [InlineData(64, 16)]     // one vector per range
    [InlineData(100, 9)]
    [InlineData(12, 5)]      // too short for the floor: every score scanned
    public unsafe void TopKIsTheFirstKOfAStableSortByScore(int n, int k)
    {
        var random = new Random(n * 31 + k);
        var rows = new List<float[]>();
        for (int r = 0; r < 20; r++) rows.Add([.. Enumerable.Range(0, n).Select(_ => (float)random.Next(0, r % 2 == 0 ? 6 : 1000))]);
        rows.Add([.. Enumerable.Range(0, n).Select(i => i < n / 2 ? 0f : 1f + i)]);            // the best all in the last range
        rows.Add([.. Enumerable.Range(0, n).Select(i => i % 7 == 0 ? float.PositiveInfinity : 0f)]);
        rows.Add([.. Enumerable.Range(0, n).Select(i => i % 3 == 0 ? float.NegativeInfinity : i % 5)]);
        foreach (var row in rows)
        {
            var expected = Enumerable.Range(0, n).OrderByDescending(i => row[i]).ThenBy(i => i).Take(k).ToArray();
            var values = new float[k];
            var positions = new int[k];
            fixed (float* pRow = row, pValues = values)
            fixed (int* pPositions = positions)
                FusedProductKeysKernel.TopK(pRow, n, k, pValues, pPositions);
            Assert.Equal(expected, positions);
            Assert.Equal(expected.Select(i => row[i]).ToArray(), values);
        }
    }
}
