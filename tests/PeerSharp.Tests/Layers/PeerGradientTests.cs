using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>
/// Autograd through PEER (gathers, top-k, softmax, BatchNorm) against central finite differences in float64, for
/// the input and every parameter.
/// </summary>
public class PeerGradientTests
{
    const double Step = 1e-6;
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
        var x = randn(Tokens, options.ModelDim, dtype: ScalarType.Float64).requires_grad_();
        var outputWeight = randn(Tokens, options.ModelDim, dtype: ScalarType.Float64);

        // The selection is piecewise constant and ReLU has a kink at 0: a perturbation of 1e-6 must cross neither.
        var reference = PeerReference.Of(peer).Forward(PeerReference.Doubles(x), training);
        Assert.True(reference.SelectionMargin > 1e-4, $"the seed gives a near tie in the top-k ({reference.SelectionMargin})");
        if (activation == ExpertActivation.Relu)
            Assert.True(reference.SmallestExpertLogit > 1e-4, $"the seed puts an expert at ReLU's kink ({reference.SmallestExpertLogit})");

        double Loss()
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            return (peer.forward(x) * outputWeight).sum().item<double>();
        }
        (peer.forward(x) * outputWeight).sum().backward();

        var checkedNames = new List<string>();
        foreach (var (name, parameter) in peer.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Append(("input", x)))
        {
            var analytic = PeerReference.Doubles(parameter.grad ?? throw new Xunit.Sdk.XunitException($"{name} has no gradient"));
            Assert.True(analytic.Max(Math.Abs) > 1e-6, $"{name}: gradient is zero, so the check proves nothing");
            var flat = parameter.detach().view(-1);
            for (int i = 0; i < analytic.Length; i++)
            {
                var slot = flat.narrow(0, i, 1);
                var value = slot.item<double>();
                slot.fill_(value + Step);
                var plus = Loss();
                slot.fill_(value - Step);
                var minus = Loss();
                slot.fill_(value);
                var numeric = (plus - minus) / (2 * Step);
                Assert.True(Math.Abs(numeric - analytic[i]) <= 1e-5 * Math.Max(Math.Abs(analytic[i]), 1e-2),
                    $"{name}[{i}]: autograd {analytic[i]:G10}, finite difference {numeric:G10}");
            }
            checkedNames.Add(name);
        }

        string[] expected = batchNorm
            ? ["query.weight", "query_norm.weight", "query_norm.bias", "keys", "down.weight", "up.weight", "input"]
            : ["query.weight", "keys", "down.weight", "up.weight", "input"];
        Assert.Equal(expected.Order(), checkedNames.Order());
    }
}
