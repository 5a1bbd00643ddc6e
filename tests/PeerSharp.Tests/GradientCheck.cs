using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests;

/// <summary>Autograd against central finite differences, in float64, for a layer's input and every parameter.</summary>
static class GradientCheck
{
    const double Step = 1e-6;

    /// <summary>
    /// Checks d(Σ w ⊙ layer(x))/dθ for every element of every parameter θ of <paramref name="layer"/> and of x,
    /// and returns the names checked ("input" for x). Routing and top-k are piecewise constant: the seeds are
    /// chosen so that a step of 1e-6 crosses no selection boundary.
    /// </summary>
    public static List<string> AssertMatchesFiniteDifferences(nn.Module<Tensor, Tensor> layer, Tensor x)
    {
        using var scope = NewDisposeScope();
        x = x.detach().clone().requires_grad_();
        var outputWeight = randn(x.shape, dtype: ScalarType.Float64);
        double Loss()
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            return (layer.forward(x) * outputWeight).sum().item<double>();
        }
        (layer.forward(x) * outputWeight).sum().backward();

        var checkedNames = new List<string>();
        foreach (var (name, variable) in layer.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Append(("input", x)))
        {
            var grad = variable.grad ?? throw new Xunit.Sdk.XunitException($"{name} has no gradient");
            var analytic = (grad.is_sparse ? grad.to_dense() : grad).contiguous().data<double>().ToArray();   // PKM's value table: row-sparse
            Assert.True(analytic.Max(Math.Abs) > 1e-6, $"{name}: gradient is zero, so the check proves nothing");
            var flat = variable.detach().view(-1);
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
        return checkedNames;
    }
}
