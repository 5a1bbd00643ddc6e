using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>
/// Autograd through PEER (gathers, top-k, softmax, BatchNorm) against central finite differences in float64, for
/// the input and every parameter.
/// </summary>
public class PeerGradientTests
{
    const int Tokens = 5;

    [Theory]
    [InlineData(ExpertActivation.Gelu, false, false)]
    [InlineData(ExpertActivation.Relu, false, false)]
    [InlineData(ExpertActivation.Gelu, true, false)]    // BatchNorm with running statistics
    [InlineData(ExpertActivation.Relu, true, false)]
    [InlineData(ExpertActivation.Gelu, true, true)]     // BatchNorm with batch statistics, part of the function
    [InlineData(ExpertActivation.Relu, true, true)]
    public void GradientsMatchFiniteDifferences(ExpertActivation activation, bool batchNorm, bool training)
    {
        using var scope = NewDisposeScope();
        manual_seed(31 + (int)activation + (batchNorm ? 2 : 0) + (training ? 4 : 0));
        var options = PeerTesting.Small with { Activation = activation, QueryBatchNorm = batchNorm };
        var peer = PeerTesting.Float64Layer(options);
        peer.train(training);
        var x = randn(Tokens, peer.ModelDim, dtype: ScalarType.Float64);

        // The selection is piecewise constant and ReLU has a kink at 0: a perturbation of 1e-6 must cross neither.
        var reference = PeerReference.Of(peer).Forward(PeerReference.Doubles(x), training);
        Assert.True(reference.SelectionMargin > 1e-4, $"the seed gives a near tie in the top-k ({reference.SelectionMargin})");
        if (activation == ExpertActivation.Relu)
            Assert.True(reference.SmallestExpertLogit > 1e-4, $"the seed puts an expert at ReLU's kink ({reference.SmallestExpertLogit})");

        var checkedNames = GradientCheck.AssertMatchesFiniteDifferences(peer, x);

        string[] expected = batchNorm
            ? ["query.weight", "query_norm.weight", "query_norm.bias", "keys", "down.weight", "up.weight", "input"]
            : ["query.weight", "keys", "down.weight", "up.weight", "input"];
        Assert.Equal(expected.Order(), checkedNames.Order());
    }
}
