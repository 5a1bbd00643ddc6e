using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>
/// The query BatchNorm behaves as PyTorch's BatchNorm1d (eps 1e-5, momentum 0.1): training normalises with the
/// batch's biased variance over every token of every sequence and moves the running statistics towards the
/// batch's mean and unbiased variance; evaluation normalises with the running statistics and leaves them alone.
/// Expected values come from those formulas, computed here.
/// </summary>
public class QueryNormTests
{
    [Fact]
    public void TrainingUsesBatchStatisticsAndUpdatesRunningOnesWithMomentum()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var options = PeerTesting.Small;
        int featureCount = options.HeadCount * options.KeyDim;
        var peer = PeerTesting.Float64Layer(options);
        var state = peer.state_dict();
        using (no_grad())
        {
            // PyTorch's initial statistics.
            state["query_norm.running_mean"].zero_();
            state["query_norm.running_var"].fill_(1.0);
        }
        var weight = PeerReference.Doubles(state["query.weight"]);
        var expectedMean = new double[featureCount];
        var expectedVariance = Enumerable.Repeat(1.0, featureCount).ToArray();

        peer.train();
        foreach (var (batch, length) in new[] { (2, 4), (3, 3) })
        {
            var x = randn(batch, length, peer.ModelDim, dtype: ScalarType.Float64);   // (B, T, d): B·T tokens
            var xs = PeerReference.Doubles(x);
            var before = PeerReference.Of(peer);

            var y = peer.forward(x);

            Assert.Equal(x.shape, y.shape);
            var expected = before.Forward(xs, training: true).Output;
            Assert.True(PeerTesting.MaxAbsDifference(expected, PeerReference.Doubles(y)) < 1e-10, "training forward must normalise with the batch statistics");

            var (mean, unbiased) = FeatureStatistics(xs, weight, peer.ModelDim, featureCount);
            for (int f = 0; f < featureCount; f++)
            {
                expectedMean[f] = 0.9 * expectedMean[f] + 0.1 * mean[f];
                expectedVariance[f] = 0.9 * expectedVariance[f] + 0.1 * unbiased[f];
            }
            Assert.True(PeerTesting.MaxAbsDifference(expectedMean, PeerReference.Doubles(state["query_norm.running_mean"])) < 1e-12);
            Assert.True(PeerTesting.MaxAbsDifference(expectedVariance, PeerReference.Doubles(state["query_norm.running_var"])) < 1e-12);
        }

        peer.eval();
        var test = randn(7, peer.ModelDim, dtype: ScalarType.Float64);
        var output = peer.forward(test);

        // The running statistics are untouched and are what normalises.
        Assert.True(PeerTesting.MaxAbsDifference(expectedMean, PeerReference.Doubles(state["query_norm.running_mean"])) < 1e-12);
        Assert.True(PeerTesting.MaxAbsDifference(expectedVariance, PeerReference.Doubles(state["query_norm.running_var"])) < 1e-12);
        var reference = PeerReference.Of(peer) with { RunningMean = expectedMean, RunningVar = expectedVariance };
        var evaluated = reference.Forward(PeerReference.Doubles(test), training: false).Output;
        Assert.True(PeerTesting.MaxAbsDifference(evaluated, PeerReference.Doubles(output)) < 1e-10, "evaluation must normalise with the running statistics");
    }

    /// Evaluation treats each token on its own: a token's output does not depend on the rest of the batch.
    [Fact]
    public void EvaluationOutputOfATokenIgnoresTheRestOfTheBatch()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        var peer = PeerTesting.Float64Layer(PeerTesting.Small);
        peer.eval();
        var x = randn(6, PeerTesting.SmallModelDim, dtype: ScalarType.Float64);

        var together = peer.forward(x);
        var alone = peer.forward(x.narrow(0, 2, 1));

        Assert.True(PeerTesting.MaxAbsDifference(PeerReference.Doubles(together[2]), PeerReference.Doubles(alone)) < 1e-12);
    }

    /// Per feature f of W_q x over all tokens: the mean and the unbiased (n - 1) variance.
    static (double[] Mean, double[] Unbiased) FeatureStatistics(double[] x, double[] weight, int modelDim, int featureCount)
    {
        int tokens = x.Length / modelDim;
        var mean = new double[featureCount];
        var unbiased = new double[featureCount];
        for (int f = 0; f < featureCount; f++)
        {
            var values = new double[tokens];
            for (int m = 0; m < tokens; m++)
                for (int c = 0; c < modelDim; c++) values[m] += weight[f * modelDim + c] * x[m * modelDim + c];
            mean[f] = values.Average();
            unbiased[f] = values.Sum(v => (v - mean[f]) * (v - mean[f])) / (tokens - 1);
        }
        return (mean, unbiased);
    }
}
