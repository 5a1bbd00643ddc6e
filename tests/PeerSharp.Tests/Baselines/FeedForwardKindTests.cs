using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Tests.Baselines;

/// <summary>Any feed-forward kind in any block, chosen in the config; JSON configs written before the baselines still load.</summary>
public class FeedForwardKindTests
{
    static readonly ModelConfig Small = new()
    {
        ContextLength = 8, ModelDim = 16, LayerCount = 4, AttentionHeads = 2,
        PeerOptions = new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        PkmOptions = new PkmOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        MoeOptions = new MoeOptions { ExpertCount = 3 },
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
    public void EachSparseKindReplacesOnlyTheMiddleBlockByDefault(FeedForwardKind kind, Type layer)
    {
        var config = Small with { FeedForward = kind };
        Assert.Equal([FeedForwardKind.Dense, kind, FeedForwardKind.Dense, FeedForwardKind.Dense], config.FeedForwardKinds());
        Assert.Equal([typeof(DenseFeedForward), layer, typeof(DenseFeedForward), typeof(DenseFeedForward)], LayerTypes(config));
    }

    [Fact]
    public void BlockKindsChooseTheFeedForwardOfEveryBlock()
    {
        var config = Small with { BlockKinds = "pkm, dense,moe,peer", SparseBlocks = "all" };
        Assert.Equal([typeof(ProductKeyMemory), typeof(DenseFeedForward), typeof(ExpertChoiceMoe), typeof(Peer)], LayerTypes(config));
        var tokenChoice = config with { MoeOptions = config.MoeOptions with { Routing = MoeRouting.TokenChoice } };
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
    [InlineData("expert choice", "routing")]
    [InlineData("token-choice", null)]
    public void MoeRoutingIsValidated(string routing, string? named)
    {
        using var folder = new TempFolder();
        var path = folder.Write("routing.json", $$"""{ "model": { "feedForward": "moe", "moe": { "routing": "{{routing}}" } } }""");
        if (named is null) Assert.Equal(MoeRouting.TokenChoice, RunConfig.Load(path, Presets.Get("tiny")).Model.MoeOptions.Routing);
        else Assert.Contains(named, Assert.Throws<PeerSharpException>(() => RunConfig.Load(path, Presets.Get("tiny"))).Message);
    }

    [Fact]
    public void ConfigFilesWithoutTheBaselineSettingsStillLoad()
    {
        using var folder = new TempFolder();
        var path = folder.Write("old.json", """{ "model": { "modelDim": 64, "sparseKind": "peer", "peer": { "subKeyCount": 16 } } }""");
        var config = RunConfig.Load(path, Presets.Get("tiny"));
        Assert.Equal(Presets.Get("tiny").Model.MoeOptions, config.Model.MoeOptions);
        Assert.Equal(Presets.Get("tiny").Model.PkmOptions, config.Model.PkmOptions);
        Assert.Equal(FeedForwardKind.Peer, config.Model.FeedForward);
        Assert.Equal("", config.Model.BlockKinds);
        Assert.Equal(64, config.Model.ModelDim);
        Assert.Equal(256, config.Model.HiddenDim);
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
                MoeOptions = new MoeOptions { ExpertCount = 5, Routing = MoeRouting.TokenChoice, CapacityFactor = 1.25, TopK = 1, AuxLossWeight = 0.02 },
                PkmOptions = new PkmOptions { SubKeyCount = 6, HeadCount = 3, TopK = 2, KeyDim = 6, QueryBatchNorm = false },
            },
        };
        var json = config.ToJson();
        Assert.DoesNotContain("hiddenDim", json);
        Assert.Equal(config, RunConfig.Load(folder.Write("run.json", json), Presets.Get("default")));
    }
}
