using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Tests;

/// <summary>Impossible settings fail early with a <see cref="PeerSharpException"/> that names the bad value.</summary>
public class SettingsValidationTests
{
    [Theory]
    [InlineData(16384, 128)]
    [InlineData(1048576, 1024)]
    [InlineData(1, 1)]
    public void SubKeyCountOfAPerfectSquare(long experts, int n) => Assert.Equal(n, ProductKeyOptions.SubKeyCountFor(experts));

    [Theory]
    [InlineData(1000)]
    [InlineData(16383)]
    [InlineData(0)]
    [InlineData(-4)]
    public void ExpertCountThatIsNotAPerfectSquareIsRejected(long experts)
    {
        var error = Assert.Throws<PeerSharpException>(() => ProductKeyOptions.SubKeyCountFor(experts));
        Assert.Contains($"{experts}", error.Message);
        Assert.Contains("perfect square", error.Message);
    }

    [Fact]
    public void TopKLargerThanTheSubKeyCountIsRejected()
    {
        var error = Assert.Throws<PeerSharpException>(() => new Peer(8, new PeerOptions { SubKeyCount = 4, TopK = 5, KeyDim = 8, HeadCount = 1 }));
        Assert.Contains("5", error.Message);
        Assert.Contains("n = 4", error.Message);
    }

    [Fact]
    public void OddKeyDimIsRejected()
    {
        var error = Assert.Throws<PeerSharpException>(() => new Peer(8, new PeerOptions { SubKeyCount = 4, TopK = 2, KeyDim = 7, HeadCount = 1 }));
        Assert.Contains("7", error.Message);
        Assert.Contains("even", error.Message);
    }

    [Fact]
    public void UnknownPositionsAreRejected()
    {
        var error = Assert.Throws<PeerSharpException>(() => EnumNames.Parse<PositionKind>("alibi", "positions"));
        Assert.Contains("'alibi'", error.Message);
    }

    [Fact]
    public void AttentionHeadsThatDoNotDivideTheModelDimAreRejected()
    {
        var error = Assert.Throws<PeerSharpException>(() => new TransformerLM(new ModelConfig { ModelDim = 30, AttentionHeads = 4 }));
        Assert.Contains("30", error.Message);
        Assert.Contains("4", error.Message);
    }

    [Fact]
    public void AnImpossiblePeerInsideAModelIsRejected()
    {
        var config = new ModelConfig { PeerOptions = new PeerOptions { SubKeyCount = 4, TopK = 8, KeyDim = 8, HeadCount = 1 } };
        Assert.Throws<PeerSharpException>(config.Validate);
    }
}
