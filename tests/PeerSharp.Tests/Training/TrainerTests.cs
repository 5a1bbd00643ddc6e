using PeerSharp.Training;
using TorchSharp;

namespace PeerSharp.Tests.Training;

public class TrainerTests
{
    [Fact]
    public void TinyRunLowersTheLossAndValidates()
    {
        using var folder = new TempFolder();
        using var train = TinyRuns.Train();
        using var validation = TinyRuns.Validation();
        var config = TinyRuns.Config(steps: 60, evalInterval: 60);
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        var losses = new List<double>();
        var trainer = new Trainer(config, model, optimizer, train, validation, Path.Combine(folder.Path, "ckpt"));
        trainer.StepCompleted += r => losses.Add(r.Loss);
        var result = trainer.Run();

        Assert.True(result.Completed);
        Assert.True(losses.TakeLast(10).Average() < losses.Take(10).Average() - 0.5,
            $"loss went from {losses.Take(10).Average():F3} to {losses.TakeLast(10).Average():F3}");
        Assert.NotNull(result.Validation);
        Assert.True(result.Validation!.BitsPerByte < Math.Log2(256), "validation should beat a uniform byte model");
        var usage = Assert.Single(result.Validation.Layers);
        Assert.InRange(usage.Usage, 0.01, 1.0);
    }

    [Fact]
    public void LiveTensorsStayFlatOver200Steps()
    {
        using var folder = new TempFolder();
        using var train = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 200);
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        var trainer = new Trainer(config, model, optimizer, train, null, Path.Combine(folder.Path, "ckpt"));
        var live = new Dictionary<long, long>();
        trainer.StepCompleted += r => live[r.Step] = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        trainer.Run();

        // After the optimizer's lazily created state exists (step 10), not one more tensor may stay alive.
        Assert.Equal(live[10], live[200]);
        Assert.Equal(live[10], live[100]);
    }
}
