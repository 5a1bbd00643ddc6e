using PeerSharp.Layers;
using PeerSharp.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Baselines;

/// <summary>Token-choice top-k routing: load-balancing loss, capacity and dropped choices, the auxiliary loss in the model.</summary>
public class TokenChoiceMoeTests
{
    static readonly MoeOptions Small = new() { ExpertCount = 3, Routing = MoeRouting.TokenChoice, TopK = 2, CapacityFactor = 1.5 };

    [Fact]
    public void LoadBalancingLossOnHandComputedRoutings()
    {
        using var scope = NewDisposeScope();
        // Top-1 (Switch): choices 0, 0, 1, 0 → f = (3/4, 1/4); mean probabilities P = (0.65, 0.35);
        // E · Σ f · P = 2 · (0.75 · 0.65 + 0.25 · 0.35) = 1.15.
        var top1 = tensor(new[] { 0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.6, 0.4 }, [4, 2], ScalarType.Float64);
        var (_, experts1) = top1.topk(1, dim: -1);
        Assert.Equal(1.15, TokenChoiceMoe.LoadBalancingLoss(top1, experts1, 2).item<double>(), 12);

        // Top-2 over 3 experts: choices {0,1}, {0,1}, {2,0} → f = (3/6, 2/6, 1/6); P = (1.4, 0.7, 0.9) / 3;
        // 3 · Σ f · P = 0.7 + 0.7/3 + 0.15.
        var top2 = tensor(new[] { 0.5, 0.3, 0.2, 0.6, 0.3, 0.1, 0.3, 0.1, 0.6 }, [3, 3], ScalarType.Float64);
        var (_, experts2) = top2.topk(2, dim: -1);
        Assert.Equal(0.7 + 0.7 / 3 + 0.15, TokenChoiceMoe.LoadBalancingLoss(top2, experts2, 3).item<double>(), 12);

        // Perfect balance gives 1.
        var even = full(6, 3, 1.0 / 3, dtype: ScalarType.Float64);
        var balanced = tensor(new long[] { 0, 1, 2, 0, 1, 2 }, [6, 1]);
        Assert.Equal(1.0, TokenChoiceMoe.LoadBalancingLoss(even, balanced, 3).item<double>(), 12);
    }

    /// <summary>A float64 layer over 2 experts whose router sends a token with positive feature 0 to expert 0 first, else to expert 1 first.</summary>
    static TokenChoiceMoe SteeredLayer(MoeOptions options)
    {
        manual_seed(11);
        var moe = new TokenChoiceMoe(4, 8, options with { ExpertCount = 2 });
        moe.to(ScalarType.Float64);
        using var noGrad = no_grad();
        moe.RouterWeight.zero_();
        moe.RouterWeight[0, 0] = 2.0;
        moe.RouterWeight[1, 0] = -2.0;
        return moe;
    }

    static Tensor TokensWithFeature0(params double[] signs)
    {
        var x = randn(signs.Length, 4, dtype: ScalarType.Float64);
        for (int t = 0; t < signs.Length; t++) x[t, 0] = signs[t] * (1 + x[t, 0].abs().item<double>());
        return x;
    }

    [Fact]
    public void DroppedTokensPassThroughTheResidualOnly()
    {
        using var scope = NewDisposeScope();
        // Top-1, c = 1: each expert takes ceil(6 / 2) = 3 tokens. All six want expert 0: the first three get it.
        var moe = SteeredLayer(Small with { TopK = 1, CapacityFactor = 1 });
        var x = TokensWithFeature0(1, 1, 1, 1, 1, 1);
        var y = moe.forward(x);
        Assert.Equal(new MoeRoutingRecord(Groups: 1, GroupSize: 6, Capacity: 3, Assignments: 3, DroppedAssignments: 3, UnroutedTokens: 3), moe.LastRouting);

        var probabilities = MoeReference.Probabilities(moe.RouterWeight, x);
        for (int t = 0; t < 3; t++)
            Assert.True(y[t].allclose(probabilities[t, 0] * MoeReference.Expert(moe.Experts, 0, x[t]), rtol: 1e-12, atol: 1e-12));
        // A dropped token's feed-forward output is exactly zero: the block passes it on through the residual alone.
        Assert.True(y.narrow(0, 3, 3).eq(0).all().item<bool>());
    }

    [Fact]
    public void FirstChoicesAreServedBeforeSecondChoices()
    {
        using var scope = NewDisposeScope();
        // Top-2 over 2 experts, c = 0.6: capacity ceil(0.6 · 2 · 3 / 2) = 2. Tokens 0 and 2 want expert 0 first,
        // token 1 wants expert 1 first. Expert 0 serves the first choices of tokens 0 and 2 before token 1's second
        // choice, which is dropped; expert 1 serves token 1, then token 0's second choice, and drops token 2's.
        var moe = SteeredLayer(Small with { TopK = 2, CapacityFactor = 0.6 });
        var x = TokensWithFeature0(1, -1, 1);
        var y = moe.forward(x);
        Assert.Equal(new MoeRoutingRecord(1, 3, 2, 4, 2, 0), moe.LastRouting);

        var p = MoeReference.Probabilities(moe.RouterWeight, x);
        Tensor F(int e, int t) => MoeReference.Expert(moe.Experts, e, x[t]);
        Assert.True(y[0].allclose(p[0, 0] * F(0, 0) + p[0, 1] * F(1, 0), rtol: 1e-12, atol: 1e-12));
        Assert.True(y[1].allclose(p[1, 1] * F(1, 1), rtol: 1e-12, atol: 1e-12));
        Assert.True(y[2].allclose(p[2, 0] * F(0, 2), rtol: 1e-12, atol: 1e-12));
    }

    [Fact]
    public void EvaluationDropsNothing()
    {
        using var scope = NewDisposeScope();
        var moe = SteeredLayer(Small with { TopK = 1, CapacityFactor = 1 });
        moe.eval();
        var x = TokensWithFeature0(1, 1, 1, 1, 1, 1);
        var y = moe.forward(x);
        Assert.Equal(new MoeRoutingRecord(1, 6, 6, 6, 0, 0), moe.LastRouting);
        Assert.Null(moe.AuxiliaryLoss);
        var probabilities = MoeReference.Probabilities(moe.RouterWeight, x);
        for (int t = 0; t < 6; t++)
            Assert.True(y[t].allclose(probabilities[t, 0] * MoeReference.Expert(moe.Experts, 0, x[t]), rtol: 1e-12, atol: 1e-12));
    }

    [Fact]
    public void TheModelLossAddsTheWeightedAuxiliaryLossInTrainingOnly()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        var config = new ModelConfig
        {
            ContextLength = 8, ModelDim = 8, LayerCount = 2, AttentionHeads = 2, FeedForward = FeedForwardKind.Moe,
            MoeOptions = new MoeOptions { ExpertCount = 3, Routing = MoeRouting.TokenChoice, AuxLossWeight = 0.5 },
        };
        using var model = new TransformerLM(config);
        var tokens = randint(0, 256, [2, 8]);
        var targets = randint(0, 256, [2, 8]);
        var moe = (TokenChoiceMoe)model.Blocks[0].FeedForward;

        model.train();
        var loss = model.Loss(tokens, targets).item<float>();
        var auxiliary = moe.AuxiliaryLoss!.item<float>();
        Assert.True(auxiliary > 0, $"the auxiliary loss is {auxiliary}");
        var logits = model.forward(tokens);
        var crossEntropy = nn.functional.cross_entropy(logits.view(-1, 256), targets.view(-1)).item<float>();
        Assert.Equal(crossEntropy + auxiliary, loss, 5);

        model.eval();
        Assert.Equal(nn.functional.cross_entropy(model.forward(tokens).view(-1, 256), targets.view(-1)).item<float>(), model.Loss(tokens, targets).item<float>(), 6);
        Assert.Null(moe.AuxiliaryLoss);
    }

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        using var scope = NewDisposeScope();
        manual_seed(13);
        var moe = new TokenChoiceMoe(4, 8, Small);
        moe.to(ScalarType.Float64);
        // 8 tokens, capacity ceil(1.5 · 2 · 8 / 3) = 8 per expert: some choices may be dropped, which is part of the function.
        var names = GradientCheck.AssertMatchesFiniteDifferences(moe, randn(2, 4, 4, dtype: ScalarType.Float64));
        Assert.Equal(["router.weight", "experts.fc_weight", "experts.fc_bias", "experts.proj_weight", "experts.proj_bias", "input"], names);
    }
}
