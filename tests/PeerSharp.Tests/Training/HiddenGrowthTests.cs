using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Evaluation;
using PeerSharp.Growth;
using PeerSharp.Model;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>The dense baseline of growth: more hidden units in every dense feed-forward, the old ones kept and frozen.</summary>
public class HiddenGrowthTests
{
    const int Multiplier = 4, Grown = 6;   // the tiny preset's feed-forward multiplier, and more

    static RunConfig Config(int steps, FreezeConfig? freeze = null) => TinyRuns.Config(steps) with
    {
        Model = TinyRuns.Config(steps).Model with { FeedForward = FeedForwardKind.Dense },
        Train = TinyRuns.Config(steps).Train with { Freeze = freeze ?? new FreezeConfig() },
    };

    static string Sidecar(TempFolder folder, string name) => Checkpoint.SidecarPath(Checkpoint.PathInFolder(folder.File(name)));

    /// <summary>A dense tiny model trained 6 steps in folder "a", grown into "b".</summary>
    static (RunConfig Before, Checkpoint After) TrainAndGrow(TempFolder folder)
    {
        var config = Config(6);
        using (var run = TrainingRun.Open(new TrainingRunOptions { Config = config, Folder = folder.File("a") }))
            Assert.True(run.Run().Completed);
        var info = Checkpoint.Read(HiddenGrowth.GrowCheckpoint(Sidecar(folder, "a"), folder.File("b"), Grown));
        return (config, info);
    }

    [Fact]
    public void OldUnitsKeepTheirWeightsAndTheGrownModelComputesTheSame()
    {
        using var folder = new TempFolder();
        var (before, grown) = TrainAndGrow(folder);
        Assert.Equal(Grown, grown.Config.Model.FeedForwardMultiplier);
        Assert.Equal(6, grown.Step);
        var (old, _) = Checkpoint.LoadModel(Sidecar(folder, "a"));
        var (@new, _) = Checkpoint.LoadModel(Sidecar(folder, "b"));
        using (old) using (@new)
        {
            int hidden = before.Model.HiddenDim, hidden2 = grown.Config.Model.HiddenDim;
            var oldParameters = old.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in @new.named_parameters())
            {
                var was = oldParameters[name];
                if (name.EndsWith(".ffn.fc.weight", StringComparison.Ordinal) || name.EndsWith(".ffn.fc.bias", StringComparison.Ordinal))
                {
                    Assert.Equal(hidden2, parameter.shape[0]);
                    Assert.True(ExpertGrowthTests.Same(was, parameter.narrow(0, 0, hidden)), $"{name}: old units' rows");
                    Assert.True(parameter.narrow(0, hidden, hidden2 - hidden).abs().sum().item<float>() > 0, $"{name}: new rows are drawn, not zero");
                }
                else if (name.EndsWith(".ffn.proj.weight", StringComparison.Ordinal))
                {
                    Assert.True(ExpertGrowthTests.Same(was, parameter.narrow(1, 0, hidden)), $"{name}: old units' columns");
                    Assert.Equal(0f, parameter.narrow(1, hidden, hidden2 - hidden).abs().sum().item<float>());
                }
                else Assert.True(ExpertGrowthTests.Same(was, parameter), $"{name} should be copied whole");
            }
            using var validation = TinyRuns.Validation();
            var lossBefore = Evaluator.Evaluate(old, validation, 8, 4096).Loss;
            var lossAfter = Evaluator.Evaluate(@new, validation, 8, 4096).Loss;
            Assert.Equal(lossBefore, lossAfter, 4);   // zero columns add nothing; only the summation order may differ
        }
    }

    [Fact]
    public void FrozenOldUnitsStayBitIdenticalWhileTheNewOnesLearn()
    {
        using var folder = new TempFolder();
        var (before, grown) = TrainAndGrow(folder);
        int hidden = before.Model.HiddenDim;
        var config = grown.Config with { Train = grown.Config.Train with { Steps = 12, Freeze = new FreezeConfig { OldHiddenUnits = hidden } } };
        var (atGrowth, optimizerAtGrowth, _) = TrainingSetup.Resume(Sidecar(folder, "b"));
        var grownStart = atGrowth.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var momentsAtGrowth = optimizerAtGrowth.StateDict().ToDictionary(e => e.Key, e => e.Value.clone());
        atGrowth.Dispose();
        optimizerAtGrowth.Dispose();
        using (var run = TrainingRun.Open(new TrainingRunOptions { Config = config, ResumeFrom = Sidecar(folder, "b") }))
            Assert.True(run.Run().Completed);
        var (start, _) = Checkpoint.LoadModel(Sidecar(folder, "a"));
        var (end, _) = Checkpoint.LoadModel(Sidecar(folder, "b"));
        using (start) using (end)
        {
            var was = start.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in end.named_parameters())
            {
                if (name.EndsWith(".ffn.fc.weight", StringComparison.Ordinal) || name.EndsWith(".ffn.fc.bias", StringComparison.Ordinal))
                {
                    Assert.True(ExpertGrowthTests.Same(was[name], parameter.narrow(0, 0, hidden)), $"{name}: old units moved");
                    var young = parameter.shape[0] - hidden;
                    Assert.False(ExpertGrowthTests.Same(grownStart[name].narrow(0, hidden, young), parameter.narrow(0, hidden, young)), $"{name}: the new units should learn");
                }
                else if (name.EndsWith(".ffn.proj.weight", StringComparison.Ordinal))
                {
                    Assert.True(ExpertGrowthTests.Same(was[name], parameter.narrow(1, 0, hidden)), $"{name}: old units moved");
                    Assert.True(parameter.narrow(1, hidden, parameter.shape[1] - hidden).abs().sum().item<float>() > 0, $"{name}: the new units should learn");
                }
                else if (name.EndsWith(".ffn.proj.bias", StringComparison.Ordinal))
                    Assert.True(ExpertGrowthTests.Same(was[name], parameter), $"{name}: the old output's bias moved");
                else if (name == "tok_emb.weight")
                    Assert.False(ExpertGrowthTests.Same(was[name], parameter), "the backbone is not frozen and should train");
            }
        }
        // The old units' optimizer moments are put back as well, along the same dimension as their weights.
        var (_, optimizerAtEnd, _) = TrainingSetup.Resume(Sidecar(folder, "b"));
        using (optimizerAtEnd)
        {
            var checkedMoments = 0;
            foreach (var (key, after) in optimizerAtEnd.StateDict())
            {
                long? dim = key.EndsWith(".ffn.fc.weight", StringComparison.Ordinal) || key.EndsWith(".ffn.fc.bias", StringComparison.Ordinal) ? 0
                          : key.EndsWith(".ffn.proj.weight", StringComparison.Ordinal) ? 1 : null;
                if (dim is not { } d || !key.StartsWith("exp_avg", StringComparison.Ordinal)) continue;
                Assert.True(ExpertGrowthTests.Same(momentsAtGrowth[key].narrow(d, 0, hidden), after.narrow(d, 0, hidden)), $"{key}: the old units' moments moved");
                Assert.False(ExpertGrowthTests.Same(momentsAtGrowth[key], after), $"{key}: the new units' moments should move");
                checkedMoments++;
            }
            Assert.True(checkedMoments >= 6, $"only {checkedMoments} moments of the dense feed-forwards were found");
        }
    }

    [Fact]
    public void GrowingToFewerUnitsOrFreezingMoreThanTheWidthIsAUserError()
    {
        using var folder = new TempFolder();
        TrainAndGrow(folder);
        var e = Assert.Throws<PeerSharpException>(() => HiddenGrowth.GrowCheckpoint(Sidecar(folder, "a"), folder.File("c"), Multiplier));
        Assert.Contains($"must be above the model's {Multiplier}", e.Message);
        var frozen = Config(1, new FreezeConfig { OldHiddenUnits = 10_000 });
        Assert.Contains("hidden width", Assert.Throws<PeerSharpException>(frozen.Validate).Message);
    }
}
