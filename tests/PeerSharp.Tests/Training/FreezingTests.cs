using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class FreezingTests
{
    const int OldN = 4;   // of the tiny preset's n = 8: experts (a, b) with a, b < 4 are "old"

    static RunConfig Config(KernelChoice kernel, int steps, FreezeConfig freeze)
    {
        var config = TinyRuns.Config(steps);
        return config with
        {
            Model = config.Model with { PeerOptions = config.Model.PeerOptions with { Kernel = kernel } },
            Train = config.Train with { Freeze = freeze },
        };
    }

    static Dictionary<string, Tensor> Snapshot(IEnumerable<KeyValuePair<string, Tensor>> tensors) =>
        tensors.GroupBy(e => e.Key).ToDictionary(g => g.Key, g => g.First().Value.detach().clone());

    [Theory]
    [InlineData(KernelChoice.Fused, false)]
    [InlineData(KernelChoice.Plain, false)]
    [InlineData(KernelChoice.Fused, true)]
    [InlineData(KernelChoice.Plain, true)]
    public void FrozenRowsAndParametersStayBitIdenticalWithTheirOptimizerState(KernelChoice kernel, bool allButNewExperts)
    {
        var freeze = allButNewExperts
            ? new FreezeConfig { OldSubKeyCount = OldN, SubKeys = true, Queries = true, Backbone = true }
            : new FreezeConfig { OldSubKeyCount = OldN };
        using var folder = new TempFolder();
        using var train = TinyRuns.Train();
        var (model, optimizer) = TrainingSetup.Create(Config(kernel, 5, new FreezeConfig()));
        using var _ = model;
        using var __ = optimizer;
        new Trainer(Config(kernel, 5, new FreezeConfig()), model, optimizer, train, null, folder.File("ckpt")).Run();   // moments not zero
        var peer = model.PeerLayers.Single();
        Assert.Equal(kernel == KernelChoice.Fused, peer.UsesFusedKernel);
        var parametersBefore = Snapshot(model.state_dict());
        var stateBefore = Snapshot(optimizer.StateDict());

        new Trainer(Config(kernel, 15, freeze), model, optimizer, train, null, folder.File("ckpt")).Run(startStep: 5);

        using var ids = arange(peer.ExpertCount);
        using var old = (ids.div(8, rounding_mode: RoundingMode.floor) < OldN).logical_and_(ids.remainder(8) < OldN).nonzero().view(-1);
        using var young = (ids.div(8, rounding_mode: RoundingMode.floor) >= OldN).logical_or_(ids.remainder(8) >= OldN).nonzero().view(-1);
        static bool Same(Tensor a, Tensor b) => ExpertGrowthTests.Same(a, b);
        foreach (var (name, after) in model.state_dict())
        {
            var before = parametersBefore[name];
            var table = name.EndsWith("ffn.down.weight", StringComparison.Ordinal) || name.EndsWith("ffn.up.weight", StringComparison.Ordinal);
            if (table)
            {
                Assert.True(Same(before.index_select(0, old), after.index_select(0, old)), $"{name}: old expert rows moved");
                Assert.False(Same(before.index_select(0, young), after.index_select(0, young)), $"{name}: new expert rows should train");
                foreach (var moment in new[] { "exp_avg", "exp_avg_sq" })
                {
                    var key = $"{moment}.{name}";
                    if (!stateBefore.ContainsKey(key)) continue;   // an alias name
                    Assert.True(Same(stateBefore[key].index_select(0, old), optimizer.StateDict()[key].index_select(0, old)), $"{key}: old rows' moments moved");
                }
            }
            else if (allButNewExperts)
                Assert.True(Same(before, after), $"{name} is frozen but changed");
            else if (name.EndsWith("tok_emb.weight", StringComparison.Ordinal))
                Assert.False(Same(before, after), "the backbone is not frozen and should train");
        }
        if (allButNewExperts)
            foreach (var (key, before) in stateBefore)
                if (!key.EndsWith("ffn.down.weight", StringComparison.Ordinal) && !key.EndsWith("ffn.up.weight", StringComparison.Ordinal) && key != "step")
                    Assert.True(Same(before, optimizer.StateDict()[key]), $"{key}: the optimizer state of a frozen parameter moved");
    }

    [Fact]
    public void AnOldSubKeyCountAboveTheLayersIsAUserError()
    {
        var config = Config(KernelChoice.Fused, 5, new FreezeConfig { OldSubKeyCount = 9 });
        var e = Assert.Throws<PeerSharpException>(config.Validate);
        Assert.Contains("frozen old sub-key count 9", e.Message);
    }
}
