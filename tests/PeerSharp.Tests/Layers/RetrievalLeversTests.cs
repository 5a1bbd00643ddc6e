using PeerSharp.Layers;
using PeerSharp.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>The levers against the retrieval collapse (DESIGN.md "Keeping experts alive"), each against the slow, obvious computation.</summary>
public class RetrievalLeversTests
{
    /// <summary>Random float64 queries [tokens, h, d_key] and sub-keys [2, n, d_key/2], and the pairs the plain retrieval selects.</summary>
    static (Tensor Queries, Tensor SubKeys, Tensor Pairs) RandomRetrieval(int seed, int tokens, int heads, int n, int k, int keyDim)
    {
        manual_seed(seed);
        var queries = randn(tokens, heads, keyDim, dtype: ScalarType.Float64);
        var subKeys = randn(2, n, keyDim / 2, dtype: ScalarType.Float64);
        return (queries, subKeys, ProductKeys.Retrieve(queries, subKeys, k).Ids);
    }

    /// <summary>P per head: the batch-mean softmax over all n² full keys, from the full key table. [h, N].</summary>
    static Tensor MeanFullKeyProbabilities(Tensor queries, Tensor subKeys) =>
        queries.matmul(FullKeys.Of(subKeys).t()).softmax(-1).mean([0]);

    /// The joint term is N · Σ_i f_i · P_i per head, P_i the batch-mean softmax over all n² full keys: built here from
    /// the full key table, not from the factorisation the library uses.
    [Fact]
    public void JointBalanceIsSwitchLossOverAllFullKeys()
    {
        using var scope = NewDisposeScope();
        const int tokens = 7, heads = 3, n = 5, k = 2, keyDim = 6;
        var (queries, subKeys, pairs) = RandomRetrieval(11, tokens, heads, n, k, keyDim);

        var loss = RetrievalBalanceLoss.Of(RetrievalBalance.Joint, queries, subKeys, pairs).ToDouble();

        var mean = MeanFullKeyProbabilities(queries, subKeys);                        // [h, N]
        double expected = 0;
        for (int j = 0; j < heads; j++)
            for (int i = 0; i < n * n; i++)
            {
                double f = pairs.select(1, j).eq(i).sum().ToDouble() / (tokens * k);
                expected += n * n * f * mean[j, i].ToDouble() / heads;
            }
        Assert.Equal(expected, loss, 10);
    }

    /// The entropy term is KL(P ‖ uniform) per head, averaged, P the batch-mean softmax over all n² full keys: built
    /// from the full key table. It is 0 for uniform probabilities (all-zero queries), positive otherwise, and it
    /// ignores which rows were selected.
    [Fact]
    public void EntropyBalanceIsTheMeanJointDistributionsDistanceFromUniform()
    {
        using var scope = NewDisposeScope();
        const int tokens = 7, heads = 3, n = 5, k = 2, keyDim = 6;
        var (queries, subKeys, pairs) = RandomRetrieval(14, tokens, heads, n, k, keyDim);

        var loss = RetrievalBalanceLoss.Of(RetrievalBalance.Entropy, queries, subKeys, pairs).ToDouble();

        var mean = MeanFullKeyProbabilities(queries, subKeys);                        // [h, N]
        double expected = 0;
        for (int j = 0; j < heads; j++)
            for (int i = 0; i < n * n; i++)
            {
                double p = mean[j, i].ToDouble();
                expected += p * Math.Log(p * n * n) / heads;
            }
        Assert.Equal(expected, loss, 10);
        Assert.True(loss > 0.01, $"random queries do not spread evenly: {loss}");
        Assert.Equal(0, RetrievalBalanceLoss.Of(RetrievalBalance.Entropy, zeros_like(queries), subKeys, pairs).ToDouble(), 10);
        Assert.Equal(loss, RetrievalBalanceLoss.Of(RetrievalBalance.Entropy, queries, subKeys, zeros_like(pairs)).ToDouble(), 12);
    }

    /// The per-half term is n · Σ_a f_a · P_a for each half and head, averaged over halves and heads.
    [Fact]
    public void HalfBalanceIsSwitchLossOnEachSubKeySet()
    {
        using var scope = NewDisposeScope();
        const int tokens = 6, heads = 2, n = 4, k = 3, keyDim = 4;
        var (queries, subKeys, pairs) = RandomRetrieval(12, tokens, heads, n, k, keyDim);

        var loss = RetrievalBalanceLoss.Of(RetrievalBalance.Halves, queries, subKeys, pairs).ToDouble();

        double expected = 0;
        for (int half = 0; half < 2; half++)
            for (int j = 0; j < heads; j++)
            {
                var p = queries.select(1, j).narrow(1, half * keyDim / 2, keyDim / 2).matmul(subKeys[half].t()).softmax(-1);   // [M, n]
                var index = half == 0 ? pairs.select(1, j).div(n, rounding_mode: RoundingMode.floor) : pairs.select(1, j).remainder(n);
                for (int a = 0; a < n; a++)
                    expected += n * (index.eq(a).sum().ToDouble() / (tokens * k)) * p.select(1, a).mean().ToDouble() / (2 * heads);
            }
        Assert.Equal(expected, loss, 10);
    }

    /// Only a sample of the tokens estimates P (the term's cost is h·n²·tokens); f counts every token's selections.
    [Fact]
    public void BalanceEstimatesProbabilitiesFromStridedTokens()
    {
        using var scope = NewDisposeScope();
        manual_seed(13);
        int tokens = 2 * RetrievalBalanceLoss.SampledTokens;
        var queries = randn(tokens, 1, 4, dtype: ScalarType.Float64);
        var subKeys = randn(2, 3, 2, dtype: ScalarType.Float64);
        var (_, pairs) = ProductKeys.Retrieve(queries, subKeys, 2);
        var loss = RetrievalBalanceLoss.Of(RetrievalBalance.Joint, queries, subKeys, pairs).ToDouble();

        // The same f with P over every second token only.
        var full = queries.slice(0, 0, tokens, 2).matmul(FullKeys.Of(subKeys).t()).softmax(-1).mean([0]).squeeze(0);   // [N]
        var f = zeros(9, dtype: ScalarType.Float64).index_add_(0, pairs.reshape(-1), ones(pairs.numel(), dtype: ScalarType.Float64), alpha: 1) / pairs.numel();
        Assert.Equal(9 * (f * full).sum().ToDouble(), loss, 10);
    }

    /// A layer with a balance term hands it to the model's loss in training mode, with gradients into the query
    /// network and both sub-key sets, and has none in evaluation mode.
    [Theory]
    [InlineData(RetrievalBalance.Halves)]
    [InlineData(RetrievalBalance.Joint)]
    [InlineData(RetrievalBalance.Entropy)]
    public void BalanceTermIsTheLayersAuxiliaryLossInTrainingOnly(RetrievalBalance balance)
    {
        using var scope = NewDisposeScope();
        manual_seed(14);
        using var peer = new Peer(8, new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4, Balance = balance, BalanceWeight = 0.5 });
        IAuxiliaryLoss auxiliary = peer;
        Assert.Null(auxiliary.AuxiliaryLoss);
        peer.train();
        var x = randn(3, 5, 8);
        peer.forward(x);
        var term = auxiliary.AuxiliaryLoss!;
        var unweighted = RetrievalBalanceLoss.Of(balance, peer.Retrieval.Queries(x.reshape(-1, 8)), peer.Retrieval.SubKeys, RetrievalPairs(peer, x));
        Assert.Equal(0.5 * unweighted.ToDouble(), term.ToDouble(), 5);
        term.backward();
        Assert.True(peer.Retrieval.QueryWeight.grad!.abs().sum().ToDouble() > 0);
        Assert.True(peer.Retrieval.SubKeys.grad![0].abs().sum().ToDouble() > 0);
        Assert.True(peer.Retrieval.SubKeys.grad![1].abs().sum().ToDouble() > 0);

        peer.eval();
        peer.forward(x);
        Assert.Null(auxiliary.AuxiliaryLoss);
    }

    static Tensor RetrievalPairs(Peer peer, Tensor x)
    {
        using var noGrad = no_grad();
        return ProductKeys.Retrieve(peer.Retrieval.Queries(x.reshape(-1, 8)), peer.Retrieval.SubKeys, peer.Options.TopK).Ids;
    }

    /// Cosine retrieval scores τ · (cos(q1, C_a) + cos(q2, C'_b)) against every full key; τ starts at √(d_key/2) and
    /// is the state dict's score_scale, once.
    [Fact]
    public void CosineRetrievalScoresAreScaledCosinesOfBothHalves()
    {
        using var scope = NewDisposeScope();
        manual_seed(15);
        var options = PeerTesting.Small with { CosineKeys = true, KeyDim = 6, SubKeyCount = 5, TopK = 3 };
        using var peer = PeerTesting.Float64Layer(options);
        peer.eval();
        Assert.Equal(Math.Sqrt(3), peer.state_dict()["score_scale"].ToDouble(), 6);
        Assert.Single(peer.state_dict().Keys, name => name.Contains("score_scale"));
        using (no_grad()) peer.state_dict()["score_scale"].fill_(2.5);
        var x = randn(4, PeerTesting.SmallModelDim, dtype: ScalarType.Float64);

        var (scores, ids) = peer.Retrieval.Retrieve(peer.Retrieval.Queries(x));

        var raw = peer.Retrieval.Queries(x) / 2.5;   // unit halves
        var (keyFirst, keySecond) = (subKeyUnit(peer, 0), subKeyUnit(peer, 1));
        var full = FullKeys.Of(stack([keyFirst, keySecond]));                          // [N, d_key] of unit halves
        var (expectedScores, expectedIds) = (2.5 * raw.matmul(full.t())).topk(3, dim: -1);
        Assert.Equal(expectedIds.data<long>().ToArray(), ids.data<long>().ToArray());
        Assert.True(PeerTesting.MaxAbsDifference(PeerReference.Doubles(expectedScores), PeerReference.Doubles(scores)) < 1e-10);
        // Each query half has length 1 before the temperature.
        var halves = raw.chunk(2, dim: -1);
        Assert.True((halves[0].norm(-1) - 1).abs().max().ToDouble() < 1e-10);
        Assert.True((halves[1].norm(-1) - 1).abs().max().ToDouble() < 1e-10);

        static Tensor subKeyUnit(Peer peer, int half)
        {
            var keys = peer.Retrieval.SubKeys[half];
            return keys / keys.norm(1, keepdim: true);
        }
    }

    /// Head rotation: head 0 keeps its ids; head j names ((a + jΔ) mod n, (b + jΔ) mod n) of the pair it retrieved,
    /// Δ = ⌊n/h⌋; every head's map is a bijection of the N rows.
    [Fact]
    public void HeadRotationShiftsEachHeadsPairByItsOwnOffset()
    {
        using var scope = NewDisposeScope();
        manual_seed(16);
        var plain = PeerTesting.Small with { SubKeyCount = 6, HeadCount = 3, TopK = 2 };
        using var peer = PeerTesting.Float64Layer(plain with { HeadRotation = true });
        peer.eval();
        var x = randn(5, PeerTesting.SmallModelDim, dtype: ScalarType.Float64);
        var queries = peer.Retrieval.Queries(x);
        var (_, pairs) = ProductKeys.Retrieve(queries, peer.Retrieval.SubKeys, 2);

        var (_, ids) = peer.Retrieval.Retrieve(queries);

        const int n = 6, delta = 2;
        var expected = pairs.data<long>().ToArray().Select((id, i) =>
        {
            long head = i / 2 % 3, a = (id / n + head * delta) % n, b = (id % n + head * delta) % n;
            return a * n + b;
        }).ToArray();
        Assert.Equal(expected, ids.data<long>().ToArray());
        Assert.Equal(pairs.select(1, 0).data<long>().ToArray(), ids.select(1, 0).data<long>().ToArray());
        Assert.NotEqual(pairs.select(1, 1).data<long>().ToArray(), ids.select(1, 1).data<long>().ToArray());
    }

    /// The fused kernels compute what the plain tensor ops compute with every lever on: outputs and balance term.
    [Theory]
    [InlineData(RetrievalBalance.Joint, true, true)]
    [InlineData(RetrievalBalance.Halves, false, true)]
    [InlineData(RetrievalBalance.Entropy, false, false)]
    [InlineData(RetrievalBalance.None, true, false)]
    public void FusedAndPlainAgreeWithLeversOn(RetrievalBalance balance, bool cosine, bool rotation)
    {
        using var scope = NewDisposeScope();
        manual_seed(17);
        var options = new PeerOptions { SubKeyCount = 8, HeadCount = 2, TopK = 3, KeyDim = 8, Balance = balance, CosineKeys = cosine, HeadRotation = rotation };
        using var fused = new Peer(16, options);
        using var plain = new Peer(16, options with { Kernel = KernelChoice.Plain });
        plain.load_state_dict(fused.state_dict());
        fused.train();
        plain.train();
        var x = randn(4, 6, 16);

        var (yFused, yPlain) = (fused.forward(x), plain.forward(x));

        Assert.True((yFused - yPlain).abs().max().ToDouble() < 1e-5);
        if (balance != RetrievalBalance.None)
            Assert.Equal(((IAuxiliaryLoss)plain).AuxiliaryLoss!.ToDouble(), ((IAuxiliaryLoss)fused).AuxiliaryLoss!.ToDouble(), 5);
    }
    /// Dead-key revival: every interval, the sub-keys no selection used since the last revival move onto recent
    /// half-queries at the living sub-keys' mean length; living sub-keys stay; nothing happens in evaluation mode.
    [Fact]
    public void RevivalMovesDeadSubKeysOntoRecentQueries()
    {
        using var scope = NewDisposeScope();
        manual_seed(21);
        var options = new PeerOptions { SubKeyCount = 8, HeadCount = 2, TopK = 2, KeyDim = 4, QueryBatchNorm = false, RevivalInterval = 3 };
        using var peer = new Peer(8, options);
        Assert.Equal(1, peer.state_dict().Keys.Count(k => k == "revival_counts"));
        using (var plainLayer = new Peer(8, options with { RevivalInterval = 0 })) Assert.DoesNotContain("revival_counts", plainLayer.state_dict().Keys);
        using (no_grad())
        {
            // Half 0: sub-keys 0-3 are ±10 along both axes, so every query has two positive scores among them and
            // sub-keys 4-7 (zero, score 0) are never in a top-2: dead.
            var half = peer.Retrieval.SubKeys[0];
            half.zero_();
            half[0, 0] = 10; half[1, 0] = -10; half[2, 1] = 10; half[3, 1] = -10;
        }
        var living = peer.Retrieval.SubKeys[0].narrow(0, 0, 4).clone();

        peer.eval();
        for (int i = 0; i < 4; i++) peer.forward(randn(4, 3, 8));                 // evaluation: no counting, no revival
        Assert.True(peer.Retrieval.SubKeys[0].narrow(0, 4, 4).eq(0).all().item<bool>());

        peer.train();
        Tensor last = randn(4, 3, 8);
        for (int i = 0; i < 3; i++) peer.forward(last = randn(4, 3, 8));         // steps 0-2: counted
        Assert.True(peer.Retrieval.SubKeys[0].narrow(0, 4, 4).eq(0).all().item<bool>(), "no revival before the interval");
        peer.forward(randn(4, 3, 8));                                             // step 3: revival first

        var keys = peer.Retrieval.SubKeys[0];
        Assert.True(keys.narrow(0, 0, 4).eq(living).all().item<bool>(), "living sub-keys stay");
        var revived = keys.narrow(0, 4, 4);                                      // [4, 2]
        Assert.True((revived.norm(1) - 10).abs().max().ToDouble() < 1e-4, "revived at the living keys' mean length");
        var candidates = nn.functional.normalize(peer.Retrieval.Queries(last.reshape(-1, 8)).narrow(-1, 0, 2).reshape(-1, 2), dim: 1);   // [M·h, 2]
        var cosines = nn.functional.normalize(revived, dim: 1).matmul(candidates.t());                                                       // [4, M·h]
        Assert.True(cosines.amax(1).gt(0.9999).all().item<bool>(), "each revived sub-key lies along a half-query of the last training forward");
    }
}
