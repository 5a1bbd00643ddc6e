using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// <summary>The batch-invariant linear map agrees with libtorch's and gives a row the same bits in any batch, on any thread count.</summary>
public class BatchInvariantLinearTests
{
    [Theory]
    [InlineData(32, 96, true)]
    [InlineData(128, 384, true)]
    [InlineData(37, 5, false)]   // widths that are not a multiple of the vector width
    public void AgreesWithTorchAndIsBitIdenticalPerRow(int inputs, int outputs, bool withBias)
    {
        using var scope = NewDisposeScope();
        manual_seed(inputs + outputs);
        var weight = randn(outputs, inputs);
        var bias = withBias ? randn(outputs) : null;
        var x = randn(17, inputs);
        var batch = BatchInvariantLinear.Forward(x, weight, bias, threads: 2);
        var difference = (batch - nn.functional.linear(x, weight, bias)).abs().max().item<float>();
        Assert.True(difference < 1e-4, $"differs from torch's linear by {difference}");
        foreach (var rows in new[] { 1, 2, 3, 5, 8 })
            for (int i = 0; i < rows; i++)
            {
                var part = BatchInvariantLinear.Forward(x.narrow(0, 17 - rows, rows), weight, bias, threads: rows % 2 + 1);
                Assert.True(part[i].equal(batch[17 - rows + i]).all().item<bool>(), $"row {17 - rows + i} in a batch of {rows} differs");
            }
    }
}
