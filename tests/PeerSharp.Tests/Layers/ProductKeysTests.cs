using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

public class ProductKeysTests
{
    /// Steps 2-3 must find exactly what scoring all N = n² full keys [C_a ; C'_b] and taking the top-k finds.
    /// Float64 normal data has no ties, so ids and scores are unique.
    [Theory]
    [InlineData(4, 1)]
    [InlineData(4, 3)]
    [InlineData(4, 4)]
    [InlineData(16, 1)]
    [InlineData(16, 3)]
    [InlineData(16, 16)]
    [InlineData(32, 1)]
    [InlineData(32, 3)]
    [InlineData(32, 32)]
    public void RetrievalIsTheExactTopKOverAllFullKeys(int n, int k)
    {
        using var scope = NewDisposeScope();
        manual_seed(1000 * n + k);
        const int tokens = 9, heads = 3, keyDim = 8;
        var queries = randn(tokens, heads, keyDim, dtype: ScalarType.Float64);
        var subKeys = randn(2, n, keyDim / 2, dtype: ScalarType.Float64);

        var (scores, ids) = ProductKeys.Retrieve(queries, subKeys, k);

        var fullKeys = FullKeys.Of(subKeys);                                                   // [N, d_key]
        var (expectedScores, expectedIds) = queries.matmul(fullKeys.t()).topk(k, dim: -1);     // [M, h, k]

        Assert.Equal(new long[] { tokens, heads, k }, ids.shape);
        Assert.Equal(new long[] { tokens, heads, k }, scores.shape);
        Assert.Equal(expectedIds.sort(-1).Values.data<long>().ToArray(), ids.sort(-1).Values.data<long>().ToArray());
        Assert.True(PeerTesting.MaxAbsDifference(PeerReference.Doubles(expectedScores), PeerReference.Doubles(scores)) < 1e-12);
        // Best first, so the gates line up with the scores in order.
        Assert.Equal(expectedIds.data<long>().ToArray(), ids.data<long>().ToArray());
    }

    /// The id convention (DESIGN.md "The algorithm"), worked by hand: id = a·n + b, a indexing C = keys[0].
    [Fact]
    public void IdsAreAnPlusBWithAFromTheFirstSubKeySet()
    {
        using var scope = NewDisposeScope();
        // n = 3, d_key = 2: C = (1, 0, -1), C' = (0, 2, 0.5); query (1, 1) scores s1[a] + s2[b] = C_a + C'_b.
        var subKeys = PeerTesting.Float64([1, 0, -1, 0, 2, 0.5], 2, 3, 1);
        var query = PeerTesting.Float64([1, 1], 1, 1, 2);

        var (scores, ids) = ProductKeys.Retrieve(query, subKeys, 3);

        // Best three: (a 0, b 1) = 3, (1, 1) = 2, (0, 2) = 1.5.
        Assert.Equal(new long[] { 0 * 3 + 1, 1 * 3 + 1, 0 * 3 + 2 }, ids.data<long>().ToArray());
        Assert.Equal(new[] { 3.0, 2.0, 1.5 }, scores.data<double>().ToArray());
    }

    /// The retrieved scores carry gradients to both sub-key sets (a port that reads keys through a detached
    /// view never trains them).
    [Fact]
    public void ScoresAreDifferentiableInQueriesAndBothSubKeySets()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var queries = randn(5, 2, 6, dtype: ScalarType.Float64).requires_grad_();
        var subKeys = randn(2, 8, 3, dtype: ScalarType.Float64).requires_grad_();

        ProductKeys.Retrieve(queries, subKeys, 3).Scores.sum().backward();

        Assert.True(queries.grad!.abs().sum().item<double>() > 0);
        Assert.True(subKeys.grad![0].abs().sum().item<double>() > 0);
        Assert.True(subKeys.grad![1].abs().sum().item<double>() > 0);
    }
}
