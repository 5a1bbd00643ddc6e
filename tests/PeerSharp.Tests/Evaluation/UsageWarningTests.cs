using PeerSharp.Config;
using PeerSharp.Evaluation;
using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Tests.Evaluation;

/// <summary>The early-training warning of `peer train` about a PEER layer that uses few of its experts.</summary>
public class UsageWarningTests
{
    static EvaluationResult Validation(double usage) => new(1.5, 1000, 1.0, [new LayerUsage(1, 16384, usage, 3.0)]);

    static ModelConfig Model(RetrievalBalance balance) =>
        Presets.Get(Presets.Default).Model with { PeerOptions = Presets.Get(Presets.Default).Model.PeerOptions with { Balance = balance } };

    [Fact]
    public void LowUsageEarlyNamesTheJointBalanceTermWhenItIsOff()
    {
        var warning = UsageWarning.For(Model(RetrievalBalance.None), 350, 1400, Validation(0.14));
        Assert.NotNull(warning);
        Assert.Contains("block 1 uses 14.0% of its 16,384 experts", warning);
        Assert.Contains("\"balance\": \"joint\"", warning);
    }

    [Fact]
    public void LowUsageWithTheDefaultTermInALargePoolNamesTheLargePoolSetting()
    {
        var million = new EvaluationResult(1.5, 1000, 1.0, [new LayerUsage(1, 1 << 20, 0.2, 3.0)]);
        var warning = UsageWarning.For(Model(RetrievalBalance.Joint), 350, 1400, million);
        Assert.Contains("than weight 0.01", warning);
        Assert.Contains("\"balanceWeight\": 0.1, \"revivalInterval\": 100", warning);
    }

    [Fact]
    public void LowUsageWithTheDefaultTermInASmallPoolNamesALargerWeightAndItsCost()
    {
        var warning = UsageWarning.For(Model(RetrievalBalance.Joint), 350, 1400, Validation(0.2));
        Assert.Contains("a larger balance weight than 0.01", warning);
        Assert.Contains("at a cost in bits per byte", warning);
        Assert.DoesNotContain("revivalInterval", warning);
    }

    [Fact]
    public void LowUsageWithTheLargePoolSettingSuggestsFewerExpertsNotMoreWeight()
    {
        var model = Model(RetrievalBalance.Joint);
        model = model with { PeerOptions = model.PeerOptions with { BalanceWeight = 0.1, RevivalInterval = 100 } };
        var warning = UsageWarning.For(model, 350, 1400, Validation(0.2));
        Assert.Contains("fewer experts", warning);
        Assert.DoesNotContain("larger balance weight", warning);
    }

    [Theory]
    [InlineData(0.9, 350)]    // usage fine
    [InlineData(0.1, 1050)]   // too late to matter
    public void NoWarningWhenUsageIsHighOrTrainingIsPastHalfway(double usage, long step) =>
        Assert.Null(UsageWarning.For(Model(RetrievalBalance.None), step, 1400, Validation(usage)));

    [Fact]
    public void APkmLayerIsNotWarnedAbout()
    {
        var model = Model(RetrievalBalance.None) with { FeedForward = FeedForwardKind.Pkm };
        Assert.Null(UsageWarning.For(model, 350, 1400, Validation(0.1)));
    }
}
