using System.Text.Json;
using System.Text.Json.Nodes;
using PeerSharp.Experiments;
using PeerSharp.Model;
using PeerSharp.Training;

namespace PeerSharp.Tests.Experiments;

/// <summary>The sweep runner: steps from budgets, results appended once, finished runs skipped, an interrupted run resumed.</summary>
public class SweepTests
{
    /// <summary>Two tiny runs (dense and PEER) at one budget on the bundled books.</summary>
    static SweepSpec TinySpec(string name = "tiny-sweep") => new()
    {
        Name = name,
        Preset = "tiny",
        Base = JsonNode.Parse("""{ "train": { "evalTokens": 1024, "warmupSteps": 2 } }""")!.AsObject(),
        Budgets = [1e9],
        Validations = 2,
        Runs =
        [
            new SweepRun { Name = "dense", Method = "dense", Config = JsonNode.Parse("""{ "model": { "feedForward": "dense" } }""")!.AsObject() },
            new SweepRun { Name = "peer", Method = "peer", Config = JsonNode.Parse("""{ "model": { "feedForward": "peer" } }""")!.AsObject() },
        ],
    };

    [Fact]
    public void StepsAreTheBudgetOverTheTrainingFlopsOfAStep()
    {
        var spec = TinySpec();
        var items = Sweep.Plan(spec);
        Assert.Equal(["dense@1e9#1337", "peer@1e9#1337"], items.Select(i => i.Id));
        foreach (var item in items)
        {
            var perStep = FlopCounter.TrainingPerForward * item.Flops.ForwardFlopsPerToken * item.Config.Train.BatchSize * item.Config.Model.ContextLength;
            Assert.Equal((long)Math.Floor(1e9 / perStep), item.Config.Train.Steps);
            Assert.True(item.TrainingFlops <= 1e9 && item.TrainingFlops > 1e9 - perStep);
            Assert.Equal((int)Math.Ceiling(item.Config.Train.Steps / 2.0), item.Config.Train.EvalInterval);
        }
        // The tiny PEER layer costs less per token than the dense feed-forward it replaces: more steps for the same budget.
        Assert.True(items[1].Config.Train.Steps > items[0].Config.Train.Steps);
    }

    [Fact]
    public void ABudgetTooSmallForTheValidationsIsAnError()
    {
        var spec = TinySpec() with { Budgets = [1e6] };
        var error = Assert.Throws<PeerSharpException>(() => Sweep.Plan(spec));
        Assert.Contains("1e6", error.Message.Replace("1e+06", "1e6"));
    }

    /// <summary>Cancels the sweep once the given run has done the given step.</summary>
    sealed class Interrupt(string id, long step, CancellationTokenSource cancellation) : ISweepObserver
    {
        public List<(string Id, long StartStep)> Started { get; } = [];
        public void RunStarted(int index, int count, SweepItem item, long startStep, double? remainingSeconds) => Started.Add((item.Id, startStep));
        public void StepCompleted(SweepItem item, StepReport report)
        {
            if (item.Id == id && report.Step == step) cancellation.Cancel();
        }
        public void RunFinished(int index, int count, SweepItem item, SweepResult result, bool skipped) { }
    }

    [Fact]
    public void AnInterruptedSweepResumesAndWritesTheSameResultsAsAnUninterruptedOne()
    {
        using var folder = new TempFolder();
        var spec = TinySpec();

        // Uninterrupted.
        var straight = Sweep.Run(spec, folder.Path, folder.File("straight.jsonl"), folder.File("runs-straight"));

        // Interrupted in the middle of the second run, then run again: the first is skipped, the second resumes.
        var peer = Sweep.Plan(spec)[1];
        using var cancellation = new CancellationTokenSource();
        var stopAt = peer.Config.Train.Steps / 2 + 1;
        var first = new Interrupt(peer.Id, stopAt, cancellation);
        var partial = Sweep.Run(spec, folder.Path, folder.File("resumed.jsonl"), folder.File("runs-resumed"), first, cancellation.Token);
        Assert.Single(partial);
        Assert.Single(File.ReadAllLines(folder.File("resumed.jsonl")));
        var second = new Interrupt("none", 0, new CancellationTokenSource());
        var resumed = Sweep.Run(spec, folder.Path, folder.File("resumed.jsonl"), folder.File("runs-resumed"), second);
        Assert.Equal([(peer.Id, (long)stopAt)], second.Started);   // resumed from the checkpoint the interruption wrote

        Assert.Equal(2, File.ReadAllLines(folder.File("resumed.jsonl")).Length);
        for (int i = 0; i < 2; i++)
        {
            // Everything but the clock is the same, bit for bit: the resumed run continues exactly.
            Assert.Equal(Comparable(straight[i]), Comparable(resumed[i]));
            Assert.Equal(2, resumed[i].Curve.Count);
        }
        Assert.True(resumed[1].Validation.Layers.Single().Usage > 0);

        // A third run finds everything done and trains nothing.
        var third = new Interrupt("none", 0, new CancellationTokenSource());
        Sweep.Run(spec, folder.Path, folder.File("resumed.jsonl"), folder.File("runs-resumed"), third);
        Assert.Empty(third.Started);
        Assert.Equal(2, File.ReadAllLines(folder.File("resumed.jsonl")).Length);
    }

    [Fact]
    public void AResultTrainedWithOtherSettingsIsNotSkippedSilently()
    {
        using var folder = new TempFolder();
        var spec = TinySpec() with { Runs = [TinySpec().Runs[0]] };
        Sweep.Run(spec, folder.Path, folder.File("results.jsonl"), folder.File("runs"));
        var changed = spec with { Base = JsonNode.Parse("""{ "train": { "evalTokens": 1024, "warmupSteps": 2, "learningRate": 0.001 } }""")!.AsObject() };
        var error = Assert.Throws<PeerSharpException>(() => Sweep.Run(changed, folder.Path, folder.File("results.jsonl"), folder.File("runs")));
        Assert.Contains("dense@1e9#1337", error.Message);
    }

    static string Comparable(SweepResult result) =>
        JsonSerializer.Serialize(result with { WallSeconds = 0, CpuSeconds = 0, TokensPerSecond = 0, FinishedAt = default }, RunConfig.Json);
}
