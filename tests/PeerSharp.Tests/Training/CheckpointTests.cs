using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class CheckpointTests
{
    public static TheoryData<TableOptimizerState> TableStates => [.. Enum.GetValues<TableOptimizerState>()];

    [Theory]
    [MemberData(nameof(TableStates))]
    public void SaveThenLoadRestoresModelAndOptimizerBitExactly(TableOptimizerState tableState)
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 3, tableState);
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        var result = new Trainer(config, model, optimizer, corpus, null, Path.Combine(folder.Path, "ckpt")).Run();

        var (restored, restoredOptimizer, info) = TrainingSetup.Resume(result.CheckpointPath!);
        using var ___ = restored;
        using var ____ = restoredOptimizer;
        Assert.Equal(3, info.Step);
        Assert.Equal(config, info.Config);
        AssertSameTensors(model.state_dict(), restored.state_dict());
        AssertSameTensors(optimizer.StateDict(), restoredOptimizer.StateDict());
        Assert.Empty(Directory.GetFiles(folder.Path, "*.tmp"));
    }

    [Fact]
    public void AReadThatASaveOvertakesReadsTheNewerCheckpoint()
    {
        using var folder = new TempFolder();
        var config = TinyRuns.Config(steps: 3);
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        var path = folder.File("ckpt");
        Checkpoint.Save(path, model, optimizer, new Checkpoint { Config = config, Step = 1 });

        // Between the reading of the sidecar and the opening of its files, a save of step 2 commits and deletes them.
        var overtaken = new SaveBeforeTheFirstOpen(() => Checkpoint.Save(path, model, optimizer, new Checkpoint { Config = config, Step = 2 }));
        Assert.Equal(2, Checkpoint.Read(path, overtaken).Step);

        // A file missing under a sidecar that did not change is an error, at once.
        File.Delete(folder.File(Checkpoint.Read(path).ModelFile!));
        Assert.EndsWith("ckpt.step-000002.safetensors' is missing", Assert.Throws<PeerSharpException>(() => Checkpoint.Read(path)).Message);
    }

    /// <summary>Checkpoint files whose first opening lets a save commit first, as a training that saves every step does.</summary>
    sealed class SaveBeforeTheFirstOpen(Action save) : CheckpointFiles
    {
        bool _saved;

        public override Microsoft.Win32.SafeHandles.SafeFileHandle OpenRegularFile(string path)
        {
            if (!_saved) save();
            _saved = true;
            return base.OpenRegularFile(path);
        }
    }

    [Fact]
    public void ResumingWithAnotherTableStateIsRefusedByName()
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 1);
        var (model, optimizer) = TrainingSetup.Create(config);
        using (model)
        using (optimizer)
        {
            var checkpoint = new Trainer(config, model, optimizer, corpus, null, Path.Combine(folder.Path, "ckpt")).Run().CheckpointPath!;
            var requested = config with { Train = config.Train with { TableState = TableOptimizerState.RowWiseBf16 } };
            var error = Assert.Throws<PeerSharpException>(() => TrainingSetup.Resume(checkpoint, requested));
            Assert.Equal($"checkpoint '{checkpoint}' was trained with table state 'row-wise-no-momentum', not 'row-wise-bf16'; resume with the state it was written with or start a new run", error.Message);
        }
    }

    [Theory]
    [MemberData(nameof(TableStates))]
    public void ResumedRunContinuesTheSameLossCurve(TableOptimizerState tableState)
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 12, tableState);

        var straight = Losses(config, corpus, Path.Combine(folder.Path, "straight"), stopAfter: null, resumeFrom: null);
        var firstHalf = Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: 6, resumeFrom: null);
        var secondHalf = Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: null, resumeFrom: Path.Combine(folder.Path, "split"));

        Assert.Equal(12, straight.Count);
        Assert.Equal(straight, firstHalf.Concat(secondHalf).ToList());
    }

    /// Dead-key revival keeps its counts, step and candidate queries in the state dict: a run stopped on a revival step
    /// (6, interval 3) and resumed revives as the uninterrupted one does.
    [Fact]
    public void ARunWithRevivalResumesOnTheSameLossCurve()
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var tiny = TinyRuns.Config(steps: 12);
        var config = tiny with { Model = tiny.Model with { PeerOptions = tiny.Model.PeerOptions with { RevivalInterval = 3 } } };

        var straight = Losses(config, corpus, Path.Combine(folder.Path, "straight"), stopAfter: null, resumeFrom: null);
        var firstHalf = Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: 6, resumeFrom: null);
        var secondHalf = Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: null, resumeFrom: Path.Combine(folder.Path, "split"));
        Assert.Equal(straight, firstHalf.Concat(secondHalf).ToList());
    }

    /// <summary>The loss of each step of a run, stopped after <paramref name="stopAfter"/> or resumed from a checkpoint.</summary>
    internal static List<double> Losses(RunConfig config, PeerSharp.Data.TokenCorpus corpus, string checkpoint, int? stopAfter, string? resumeFrom)
    {
        PeerSharp.Model.TransformerLM model;
        IOptimizer optimizer;
        long start = 0;
        if (resumeFrom is null) (model, optimizer) = TrainingSetup.Create(config);
        else
        {
            (model, optimizer, var info) = TrainingSetup.Resume(resumeFrom);
            start = info.Step;
        }
        using var _ = model;
        using var __ = optimizer;
        var trainer = new Trainer(config, model, optimizer, corpus, null, checkpoint);
        var losses = new List<double>();
        using var stop = new CancellationTokenSource();
        trainer.StepCompleted += r =>
        {
            losses.Add(r.Loss);
            if (r.Step == stopAfter) stop.Cancel();
        };
        trainer.Run(start, cancellation: stop.Token);
        return losses;
    }

    internal static void AssertSameTensors(IDictionary<string, Tensor> expected, IDictionary<string, Tensor> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
            Assert.True(tensor.shape.SequenceEqual(actual[name].shape) && tensor.eq(actual[name]).all().item<bool>(), $"tensor '{name}' differs after the round trip");
    }
}
