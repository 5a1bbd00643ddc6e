using PeerSharp.Optimizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class GradientClippingTests
{
    /// A dense parameter and a table with a row-sparse gradient that repeats row 2, plus their dense twins.
    static (Parameter[] Mixed, Parameter[] Dense) Parameters()
    {
        var g = new Generator(4);
        var weight = randn(5, 3, generator: g);
        var weightGrad = randn(5, 3, generator: g);
        var table = randn(10, 4, generator: g);
        var tableGrad = sparse_coo_tensor(tensor(new long[] { 7, 2, 2 }).unsqueeze(0), randn(3, 4, generator: g), [10, 4]);
        var mixed = new[] { new Parameter(weight.clone()), new Parameter(table.clone()) };
        mixed[0].grad = weightGrad.clone();
        mixed[1].grad = tableGrad;
        var dense = new[] { new Parameter(weight.clone()), new Parameter(table.clone()) };
        dense[0].grad = weightGrad.clone();
        dense[1].grad = tableGrad.to_dense();
        return (mixed, dense);
    }

    [Fact]
    public void SparseGradientsCountAndClipLikeTheirDenseForm()
    {
        using var scope = NewDisposeScope();
        var (mixed, dense) = Parameters();
        var expected = nn.utils.clip_grad_norm_(dense, 0.5);
        var norm = GradientClipping.ClipGlobalNorm(mixed, 0.5);
        Assert.Equal(expected, norm, 5);
        Assert.True(mixed[1].grad!.is_sparse);
        for (int i = 0; i < 2; i++)
        {
            var actual = mixed[i].grad!.is_sparse ? mixed[i].grad!.to_dense() : mixed[i].grad!;
            Assert.True(actual.allclose(dense[i].grad!, rtol: 1e-5, atol: 1e-7));
        }
    }

    [Fact]
    public void SmallGradientsAndZeroLimitOnlyMeasure()
    {
        using var scope = NewDisposeScope();
        var (mixed, dense) = Parameters();
        var before = mixed[0].grad!.clone();
        var norm = GradientClipping.ClipGlobalNorm(mixed, 0);
        Assert.Equal(nn.utils.clip_grad_norm_(dense, 1e9), norm, 5);
        Assert.True(mixed[0].grad!.eq(before).all().item<bool>());
        Assert.Equal(norm, GradientClipping.ClipGlobalNorm(mixed, 2 * norm), 6);
        Assert.True(mixed[0].grad!.eq(before).all().item<bool>());
    }
}
