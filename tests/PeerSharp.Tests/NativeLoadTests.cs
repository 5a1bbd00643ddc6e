using static TorchSharp.torch;

namespace PeerSharp.Tests;

public class NativeLoadTests
{
    /// The build marks libLibTorchSharp.so's GLIBCXX_3.4.32 requirement weak on older distributions;
    /// without it this first native call throws on Debian 12.
    [Fact]
    public void TorchSharpLoadsAndComputes()
    {
        using var a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var product = a.matmul(a.t());
        Assert.Equal(50f, product[1, 1].item<float>());
    }
}
