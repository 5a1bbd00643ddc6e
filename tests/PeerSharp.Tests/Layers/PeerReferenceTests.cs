namespace PeerSharp.Tests.Layers;

/// <summary>Checks of the tests' own oracle where it does more than add and multiply.</summary>
public class PeerReferenceTests
{
    [Fact]
    public void ErfMatchesTabulatedValues()
    {
        // Abramowitz & Stegun table 7.1 and erfc(4) = 1.541725790028002e-8.
        Assert.Equal(0.5204998778130465, PeerReference.Erf(0.5), 14);
        Assert.Equal(0.8427007929497149, PeerReference.Erf(1), 14);
        Assert.Equal(-0.9953222650189527, PeerReference.Erf(-2), 14);
        Assert.Equal(0.9999779095030014, PeerReference.Erf(3), 14);
        Assert.Equal(1 - 1.541725790028002e-8, PeerReference.Erf(4), 15);
    }
}
