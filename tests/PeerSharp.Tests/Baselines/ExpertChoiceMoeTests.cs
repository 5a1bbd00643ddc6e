using PeerSharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Baselines;

/// <summary>Expert-choice routing (Zhou et al. 2022): capacities, combining weights, gradients, routing groups.</summary>
public class ExpertChoiceMoeTests
{
    // 2 sequences of 6 tokens: in training one group of 12, so each of the 4 experts takes C = 2 · 12 / 4 = 6.
    static readonly MoeOptions Small = new() { ExpertCount = 4, CapacityFactor = 2 };

    static ExpertChoiceMoe Float64Layer(int seed)
    {
        manual_seed(seed);
        var moe = new ExpertChoiceMoe(4, 8, Small);
        moe.to(ScalarType.Float64);
        return moe;
    }

    [Fact]
    public void EveryExpertTakesExactlyItsCapacityOfItsBestTokens()
    {
        using var scope = NewDisposeScope();
        var moe = Float64Layer(1);
        var x = randn(2, 6, 4, dtype: ScalarType.Float64);
        moe.forward(x);
        Assert.Equal(new MoeRoutingRecord(Groups: 1, GroupSize: 12, Capacity: 6, Assignments: 24, DroppedAssignments: 0, UnroutedTokens: moe.LastRouting!.UnroutedTokens), moe.LastRouting);

        var probabilities = MoeReference.Probabilities(moe.RouterWeight, x.view(12, 4));           // [12, E]
        var (gates, tokens) = ExpertChoiceMoe.Route(probabilities.unsqueeze(0), 6);               // [1, E, 6]
        for (int e = 0; e < 4; e++)
        {
            var chosen = tokens[0, e].data<long>().ToArray();
            Assert.Equal(6, chosen.Distinct().Count());
            // The chosen tokens are the expert's 6 highest scores, and their gates are those scores.
            var best = probabilities.select(1, e).argsort(descending: true).narrow(0, 0, 6).data<long>().ToArray();
            Assert.Equal(best.Order(), chosen.Order());
            Assert.Equal(probabilities.select(1, e).index_select(0, tokens[0, e]).data<double>().ToArray(), gates[0, e].data<double>().ToArray());
        }
        var unrouted = Enumerable.Range(0, 12).Count(t => !tokens.data<long>().Contains(t));
        Assert.Equal(unrouted, moe.LastRouting!.UnroutedTokens);
    }

    [Fact]
    public void OutputIsEachTakingExpertWeightedByTheRouterSoftmax()
    {
        using var scope = NewDisposeScope();
        var moe = Float64Layer(2);
        var x = randn(2, 6, 4, dtype: ScalarType.Float64);
        var y = moe.forward(x).view(12, 4);

        var tokensOf = x.view(12, 4);
        var probabilities = MoeReference.Probabilities(moe.RouterWeight, tokensOf);
        var (_, tokens) = ExpertChoiceMoe.Route(probabilities.unsqueeze(0), 6);
        var expected = zeros(12, 4, dtype: ScalarType.Float64);
        for (int e = 0; e < 4; e++)
            foreach (var t in tokens[0, e].data<long>().ToArray())
                expected[t] += probabilities[t, e] * MoeReference.Expert(moe.Experts, e, tokensOf[t]);
        Assert.True(y.allclose(expected, rtol: 1e-12, atol: 1e-12));
    }

    [Fact]
    public void GradientReachesTheRouter()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var moe = new ExpertChoiceMoe(4, 8, Small);
        (moe.forward(randn(2, 6, 4)) * randn(2, 6, 4)).sum().backward();
        Assert.True(moe.RouterWeight.grad is { } grad && grad.abs().max().item<float>() > 0, "the router gets no gradient");
    }

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        using var scope = NewDisposeScope();
        var moe = Float64Layer(4);
        var names = GradientCheck.AssertMatchesFiniteDifferences(moe, randn(2, 6, 4, dtype: ScalarType.Float64));
        Assert.Equal(["router.weight", "experts.fc_weight", "experts.fc_bias", "experts.proj_weight", "experts.proj_bias", "input"], names);
    }

    [Fact]
    public void EvaluationRoutesEachSequenceOnItsOwn()
    {
        using var scope = NewDisposeScope();
        var moe = Float64Layer(5);
        moe.eval();
        var x = randn(2, 6, 4, dtype: ScalarType.Float64);
        var y = moe.forward(x);
        Assert.Equal(new MoeRoutingRecord(2, 6, 3, 24, 0, moe.LastRouting!.UnroutedTokens), moe.LastRouting);

        // The first sequence's output does not depend on the second sequence, and equals its output alone.
        var other = x.clone();
        other[1] = randn(6, 4, dtype: ScalarType.Float64);
        Assert.True(moe.forward(other)[0].eq(y[0]).all().item<bool>());
        Assert.True(moe.forward(x.narrow(0, 0, 1))[0].eq(y[0]).all().item<bool>());
    }

    /// Causal evaluation: a token's output is what sequence-mode expert choice gives the last token of its prefix, so
    /// later tokens cannot change it; sequence mode does depend on them.
    [Fact]
    public void CausalEvaluationRoutesEachTokenAsIfItsSequenceEndedThere()
    {
        using var scope = NewDisposeScope();
        var moe = Float64Layer(5);
        moe.eval();
        var x = randn(2, 10, 4, dtype: ScalarType.Float64);
        moe.Evaluation = ExpertChoiceEvaluation.Causal;
        var causal = moe.forward(x);                                                  // [2, 10, 4]
        moe.Evaluation = ExpertChoiceEvaluation.Sequence;
        for (int t = 0; t < 10; t++)
        {
            var prefix = moe.forward(x.narrow(1, 0, t + 1));                           // the reference: the prefix as a whole sequence
            Assert.True(causal.select(1, t).allclose(prefix.select(1, t), rtol: 1e-12, atol: 1e-12), $"position {t}");
        }

        // Perturb the tokens after position 5: causal outputs up to 5 stay, sequence-mode ones move.
        var changed = x.clone();
        changed[.., 6..] = randn(2, 4, 4, dtype: ScalarType.Float64) * 3;
        var sequence = moe.forward(x);
        var sequenceChanged = moe.forward(changed);
        moe.Evaluation = ExpertChoiceEvaluation.Causal;
        var causalChanged = moe.forward(changed);
        Assert.True(causal.narrow(1, 0, 6).allclose(causalChanged.narrow(1, 0, 6), rtol: 0, atol: 0));
        Assert.False(sequence.narrow(1, 0, 6).allclose(sequenceChanged.narrow(1, 0, 6), rtol: 1e-9, atol: 1e-9));
        Assert.False(causal.allclose(sequence, rtol: 1e-9, atol: 1e-9));
    }

    /// Training-group evaluation routes the whole batch as one group, as training does: another sequence changes a sequence's output.
    [Fact]
    public void TrainingGroupEvaluationRoutesTheBatchAsTrainingDoes()
    {
        using var scope = NewDisposeScope();
        var moe = Float64Layer(6);
        var x = randn(2, 6, 4, dtype: ScalarType.Float64);
        var trained = moe.forward(x);
        moe.eval();
        moe.Evaluation = ExpertChoiceEvaluation.TrainingGroup;
        Assert.True(moe.forward(x).allclose(trained, rtol: 1e-12, atol: 1e-12));
        Assert.Equal(12, moe.LastRouting!.GroupSize);
        var other = x.clone();
        other[1] = randn(6, 4, dtype: ScalarType.Float64) * 3;
        Assert.False(moe.forward(other)[0].allclose(trained[0], rtol: 1e-9, atol: 1e-9));
        moe.Evaluation = ExpertChoiceEvaluation.Sequence;
        Assert.True(moe.forward(other)[0].allclose(moe.forward(x)[0], rtol: 0, atol: 0));
    }
}
