using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Training;

namespace PeerSharp.Tests.Baselines;

/// <summary>Any feed-forward kind in any block, chosen in the config; JSON configs written before the baselines still load.</summary>
public class FeedForwardKindTests
{
    static readonly ModelConfig Small = new()
    {
        ContextLength = 8, ModelDim = 16, LayerCount = 4, AttentionHeads = 2,
        Peer = new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        Pkm = new PkmOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        Moe = new MoeOptions { ExpertCount = 3 },
    };

    static Type[] LayerTypes(ModelConfig config)
    {
        using var model = new TransformerLM(config);
        return model.Blocks.Select(b => b.FeedForward.GetType()).ToArray();
    }

    [Theory]
    [InlineData(FeedForwardKind.Moe, typeof(ExpertChoiceMoe))]
    [InlineData(FeedForwardKind.Pkm, typeof(ProductKeyMemory))]
    [InlineData(FeedForwardKind.Peer, typeof(Peer))]
    public void EachSparseKindReplacesOnlyTheMiddleBlockByDefault(string kind, Type layer)
    {
        var config = Small with { SparseKind = kind };
        Assert.Equal([FeedForwardKind.Dense, kind, FeedForwardKind.Dense, FeedForwardKind.Dense], config.FeedForwardKinds());
        Assert.Equal([typeof(DenseFeedForward), layer, typeof(DenseFeedForward), typeof(DenseFeedForward)], LayerTypes(config));
    }

    [Fact]
    public void BlockKindsChooseTheFeedForwardOfEveryBlock()
    {
        var config = Small with { BlockKinds = "pkm, dense,moe,peer", SparseBlocks = "all" };
        Assert.Equal([typeof(ProductKeyMemory), typeof(DenseFeedForward), typeof(ExpertChoiceMoe), typeof(Peer)], LayerTypes(config));
        var tokenChoice = config with { Moe = config.Moe with { Routing = MoeOptions.TokenChoice } };
        Assert.Equal(typeof(TokenChoiceMoe), LayerTypes(tokenChoice)[2]);
    }

    [Theory]
    [InlineData("dense,moe", "2 feed-forwards")]
    [InlineData("dense,moe,ffn,peer", "'ffn'")]
    public void BadBlockKindsAreAnError(string blockKinds, string named)
    {
        var error = Assert.Throws<PeerSharpException>(() => (Small with { BlockKinds = blockKinds }).Validate());
        Assert.Contains(named, error.Message);
    }

    [Theory]
    [InlineData("expert choice", "MoE routing 'expert choice'")]
    [InlineData("token-choice", null)]
    public void MoeRoutingIsValidated(string routing, string? named)
    {
        var config = Small with { SparseKind = FeedForwardKind.Moe, Moe = Small.Moe with { Routing = routing } };
        if (named is null) config.Validate();
        else Assert.Contains(named, Assert.Throws<PeerSharpException>(config.Validate).Message);
    }

    [Fact]
    public void ConfigFilesWithoutTheBaselineSettingsStillLoad()
    {
        using var folder = new TempFolder();
        var path = folder.Write("old.json", """{ "model": { "modelDim": 64, "sparseKind": "peer", "peer": { "subKeyCount": 16 } } }""");
        var config = RunConfig.Load(path, Presets.Get("tiny"));
        Assert.Equal(Presets.Get("tiny").Model.Moe, config.Model.Moe);
        Assert.Equal(Presets.Get("tiny").Model.Pkm, config.Model.Pkm);
        Assert.Equal("", config.Model.BlockKinds);
        Assert.Equal(64, config.Model.MoeLayer.ModelDim);
        Assert.Equal(256, config.Model.MoeLayer.HiddenDim);
    }

    [Fact]
    public void BaselineSettingsRoundTripThroughJson()
    {
        using var folder = new TempFolder();
        var config = Presets.Get("tiny") with
        {
            Model = Presets.Get("tiny").Model with
            {
                BlockKinds = "moe,pkm",
                Moe = new MoeOptions { ExpertCount = 5, Routing = MoeOptions.TokenChoice, CapacityFactor = 1.25, TopK = 1, AuxLossWeight = 0.02 },
                Pkm = new PkmOptions { SubKeyCount = 6, HeadCount = 3, TopK = 2, KeyDim = 6, QueryBatchNorm = false },
            },
        };
        var json = config.ToJson();
        Assert.DoesNotContain("hiddenDim", json);
        Assert.Equal(config, RunConfig.Load(folder.Write("run.json", json), Presets.Get("default")));
    }
}
