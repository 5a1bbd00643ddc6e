using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Evaluation;
using PeerSharp.Growth;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class ExpertGrowthTests
{
    const int OldN = 8, NewN = 16;   // the tiny preset's n, and twice it

    // Full AdamW moments, so that both moments of every row can be followed to its new id.
    static RunConfig Config(FeedForwardKind kind, int steps) => TinyRuns.Config(steps) with
    {
        Model = TinyRuns.Config(steps).Model with { FeedForward = kind },
        Train = TinyRuns.Config(steps).Train with { TableState = TableOptimizerState.Full },
    };

    /// <summary>A tiny model trained a few steps, so that its rows and moments are not at their initial values.</summary>
    static (TransformerLM Model, IOptimizer Optimizer, RunConfig Config) Trained(FeedForwardKind kind, int steps = 8)
    {
        var config = Config(kind, steps);
        var (model, optimizer) = TrainingSetup.Create(config);
        using var folder = new TempFolder();
        using var train = TinyRuns.Train();
        new Trainer(config, model, optimizer, train, null, folder.File("ckpt")).Run();
        return (model, optimizer, config);
    }

    static IExpertRetrieval Layer(TransformerLM model) => model.Blocks.Select(b => b.FeedForward).OfType<IExpertRetrieval>().Single();

    static Tensor State(IOptimizer optimizer, string moment, string table) =>
        optimizer.StateDict().Single(e => e.Key.StartsWith(moment + ".", StringComparison.Ordinal) && e.Key.EndsWith(".ffn." + table, StringComparison.Ordinal)).Value;

    /// <summary>Same shape and equal elements.</summary>
    internal static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Theory]
    [InlineData(FeedForwardKind.Peer)]
    [InlineData(FeedForwardKind.Pkm)]
    public void OldExpertsKeepTheirRowsAndMomentsUnderTheirNewIds(FeedForwardKind kind)
    {
        var (model, optimizer, config) = Trained(kind);
        using var _ = model;
        using var __ = optimizer;
        var (grown, grownOptimizer, grownConfig) = ExpertGrowth.Grow(model, optimizer, config, new GrowthOptions { SubKeyCount = NewN });
        using var ___ = grown;
        using var ____ = grownOptimizer;
        var (old, @new) = (Layer(model), Layer(grown));

        Assert.Equal((long)NewN * NewN, @new.ExpertCount);
        Assert.Equal(NewN, grownConfig.Model.FeedForward == FeedForwardKind.Peer ? grownConfig.Model.PeerOptions.SubKeyCount : grownConfig.Model.PkmOptions.SubKeyCount);
        Assert.True(Same(old.Retrieval.SubKeys, @new.Retrieval.SubKeys.narrow(1, 0, OldN)), "old sub-keys keep places 0…n−1");
        foreach (var ((name, oldTable), (_, newTable)) in old.Tables.Zip(@new.Tables))
        {
            var moments = new[] { "exp_avg", "exp_avg_sq" }.Select(m => (Old: State(optimizer, m, name), New: State(grownOptimizer, m, name))).ToList();
            Assert.True(moments.All(m => m.Old.abs().sum().item<float>() > 0), $"{name}: training should have moved the moments");
            for (int a = 0; a < NewN; a++)
                for (int b = 0; b < NewN; b++)
                {
                    long id = a * NewN + b;
                    if (a < OldN && b < OldN)
                    {
                        // Old expert (a, b) is found at a·n2 + b, with identical rows and moments.
                        Assert.True(Same(oldTable[a * OldN + b], newTable[id]), $"{name}: expert ({a}, {b})");
                        Assert.All(moments, m => Assert.True(Same(m.Old[a * OldN + b], m.New[id]), $"{name} moments: expert ({a}, {b})"));
                    }
                    else
                    {
                        Assert.All(moments, m => Assert.Equal(0f, m.New[id].abs().sum().item<float>()));
                        if (name != "down.weight") Assert.Equal(0f, newTable[id].abs().sum().item<float>());   // v = 0: a new expert adds nothing
                    }
                }
        }
        Assert.Equal(optimizer.StepCount, grownOptimizer.StepCount);
        Assert.True(Same(model.get_parameter("tok_emb.weight")!, grown.get_parameter("tok_emb.weight")!));
    }

    [Theory]
    [InlineData(FeedForwardKind.Peer)]
    [InlineData(FeedForwardKind.Pkm)]
    public void GrowingBarelyChangesTheValidationLoss(FeedForwardKind kind)
    {
        var (model, optimizer, config) = Trained(kind, steps: 30);
        using var _ = model;
        using var __ = optimizer;
        using var validation = TinyRuns.Validation();
        var before = Evaluator.Evaluate(model, validation, 8, 8192).Loss;
        var (grown, grownOptimizer, _) = ExpertGrowth.Grow(model, optimizer, config, new GrowthOptions { SubKeyCount = NewN });
        using var ___ = grown;
        using var ____ = grownOptimizer;
        var after = Evaluator.Evaluate(grown, validation, 8, 8192).Loss;
        Assert.InRange(after - before, -0.01, 0.01);
        Assert.True(Layer(grown).Retrieval.SubKeys.narrow(1, OldN, NewN - OldN).abs().sum().item<float>() > 0, "new sub-keys are not all zero");
    }

    [Fact]
    public void AGrownCheckpointResumesEvaluatesAndLoadsLikeAnyOther()
    {
        using var folder = new TempFolder();
        var config = Config(FeedForwardKind.Peer, steps: 6);
        using (var run = TrainingRun.Open(new TrainingRunOptions { Config = config, Folder = folder.File("a") }))
            Assert.True(run.Run().Completed);

        var sidecar = ExpertGrowth.GrowCheckpoint(Checkpoint.SidecarPath(Checkpoint.PathInFolder(folder.File("a"))), folder.File("b"), new GrowthOptions { SubKeyCount = NewN });
        var info = Checkpoint.Read(sidecar);
        Assert.Equal(NewN, info.Config.Model.PeerOptions.SubKeyCount);
        Assert.Equal(6, info.Step);
        Assert.True(File.Exists(Path.Combine(folder.File("b"), "config.json")));

        var (model, _) = Checkpoint.LoadModel(sidecar);
        using (model)
        {
            using var validation = TinyRuns.Validation();
            Assert.True(double.IsFinite(Evaluator.Evaluate(model, validation, 8, 2048).Loss));
        }
        using (var resumed = TrainingRun.Open(new TrainingRunOptions { Config = info.Config with { Train = info.Config.Train with { Steps = 10 } }, ResumeFrom = sidecar }))
        {
            Assert.Equal(6, resumed.StartStep);
            var result = resumed.Run();
            Assert.True(result.Completed);
            Assert.Equal(10, result.Step);
        }
        Assert.Equal(10, Checkpoint.Read(sidecar).Step);
    }

    [Fact]
    public void GrowingToFewerSubKeysIsAUserError()
    {
        var e = Assert.Throws<PeerSharpException>(() => new GrowthOptions { SubKeyCount = OldN }.Validate(Config(FeedForwardKind.Peer, 1).Model));
        Assert.Contains($"new sub-key count {OldN}", e.Message);
        Assert.Throws<PeerSharpException>(() => new GrowthOptions { SubKeyCount = NewN }.Validate(Config(FeedForwardKind.Dense, 1).Model));
    }

    /// Head rotation depends on n, so growing would move the old experts: refused, but only for a layer the model has.
    [Fact]
    public void AModelWithHeadRotationCannotGrow()
    {
        var model = Presets.Get("tiny").Model;
        var rotated = model with { PeerOptions = model.PeerOptions with { HeadRotation = true } };
        var options = new GrowthOptions { SubKeyCount = 16 };
        Assert.Contains("head rotation", Assert.Throws<PeerSharpException>(() => options.Validate(rotated with { FeedForward = PeerSharp.Model.FeedForwardKind.Peer })).Message);
        options.Validate(rotated with { FeedForward = PeerSharp.Model.FeedForwardKind.Pkm });   // PKM without rotation grows
    }
}
