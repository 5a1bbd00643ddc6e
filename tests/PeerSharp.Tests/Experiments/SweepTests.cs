using System.Text.Json;
using System.Text.Json.Nodes;
using PeerSharp.Config;
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

    /// Equal steps (the retrieval ablation's protocol): every run trains the spec's steps, its budget what they cost.
    [Fact]
    public void AtEqualStepsEveryRunTrainsTheSameStepsAndCostsWhatTheyCost()
    {
        var spec = TinySpec() with { Budgets = [], Steps = 12 };
        var items = Sweep.Plan(spec);
        Assert.All(items, item => Assert.Equal(12, item.Config.Train.Steps));
        Assert.All(items, item => Assert.Equal(item.Flops.TrainingFlopsPerStep(item.Config.Train.BatchSize) * 12, item.Budget, 6));
        Assert.NotEqual(items[0].Budget, items[1].Budget);
        using var folder = new TempFolder();
        var both = folder.Write("both.json", """{ "name": "both", "steps": 12, "budgets": [1e9], "runs": [ { "name": "a", "method": "a" } ] }""");
        Assert.Contains("without budgets", Assert.Throws<PeerSharpException>(() => SweepSpec.Load(both)).Message);
    }

    /// A sweep stopped part-way should hold the whole grid at its first seed, not every seed of its first runs.
    [Fact]
    public void ThePlanRunsTheWholeGridAtOneSeedBeforeTheNext()
    {
        var spec = TinySpec() with { Seeds = [1, 2] };
        Assert.Equal(["dense@1e9#1", "peer@1e9#1", "dense@1e9#2", "peer@1e9#2"], Sweep.Plan(spec).Select(i => i.Id));
    }

    /// … and within a seed, each budget's whole isoFLOP curve before the next budget's.
    [Fact]
    public void WithinASeedThePlanRunsEveryRunAtTheSmallestBudgetFirst()
    {
        var spec = TinySpec() with { Budgets = [3e9, 1e9] };
        Assert.Equal(["dense@1e9#1337", "peer@1e9#1337", "dense@3e9#1337", "peer@3e9#1337"], Sweep.Plan(spec).Select(i => i.Id));
    }

    /// `peer sweep --only`: the named runs at every seed and budget, the same items (ids, settings) as in the whole
    /// plan, no confirmations; a name the spec lacks is an error naming the spec's runs.
    [Fact]
    public void OnlyKeepsTheNamedRunsAsTheWholePlanHasThem()
    {
        var spec = TinySpec() with { Seeds = [1, 2], Budgets = [3e9, 1e9], ConfirmationSeeds = [7] };
        var part = spec.Only(["peer"]);
        Assert.Equal(["peer@1e9#1", "peer@3e9#1", "peer@1e9#2", "peer@3e9#2"], Sweep.Plan(part).Select(i => i.Id));
        var whole = Sweep.Plan(spec).ToDictionary(i => i.Id);
        Assert.All(Sweep.Plan(part), item => Assert.Equal(JsonSerializer.Serialize(whole[item.Id].Config), JsonSerializer.Serialize(item.Config)));
        Assert.Empty(part.ConfirmationSeeds);
        var error = Assert.Throws<PeerSharpException>(() => spec.Only(["peer", "moe"])).Message;
        Assert.Contains("'moe'", error);
        Assert.Contains("dense, peer", error);
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
        // Each line says what machine's roundings it carries, and the file keeps it.
        var written = Sweep.ReadResults(folder.File("resumed.jsonl"));
        Assert.All(resumed, r => Assert.Equal(MachineInfo.Current().Numerics, written[r.Id].Machine));
        Assert.Matches(", (AVX|no AVX2)", MachineInfo.Current().Numerics);

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

    static SweepResult Fake(SweepItem item, double bitsPerByte) => new()
    {
        Id = item.Id, Experiment = "tiny-sweep", Run = item.Run.Name, Method = item.Run.Method, Budget = item.Budget, Seed = item.Seed,
        Config = item.Config, Validation = new Score(bitsPerByte, bitsPerByte, 1, 1, []),
    };

    [Fact]
    public void ConfirmationSeedsFollowTheGridAtEachMethodsComputeOptimalRun()
    {
        var small = new SweepRun { Name = "dense-small", Method = "dense", Config = JsonNode.Parse("""{ "model": { "feedForward": "dense" } }""")!.AsObject() };
        var wide = new SweepRun { Name = "dense-wide", Method = "dense", Config = JsonNode.Parse("""{ "model": { "feedForward": "dense", "modelDim": 48 } }""")!.AsObject() };
        var spec = TinySpec() with { Runs = [small, wide, TinySpec().Runs[1]], Budgets = [1e9, 2e9], ConfirmationSeeds = [7, 1337] };
        var grid = Sweep.Plan(spec);
        Assert.Equal(6, grid.Count);

        // The small model wins at 1e9, the wide one at 2e9; PEER is alone in its method.
        var results = grid.ToDictionary(i => i.Id, i => Fake(i, (i.Run.Name, i.Budget) switch { ("dense-small", 1e9) => 2.0, ("dense-wide", 2e9) => 1.5, _ => 3.0 }));
        Assert.Empty(Sweep.Confirmations(spec, results.Where(r => r.Key != grid[^1].Id).ToDictionary()));   // grid incomplete: no choice yet
        var confirmations = Sweep.Confirmations(spec, results);
        Assert.Equal(["dense-small@1e9#7", "dense-wide@2e9#7", "peer@1e9#7", "peer@2e9#7"], confirmations.Select(i => i.Id).Order(StringComparer.Ordinal));
        var twin = grid.Single(i => i.Id == "dense-small@1e9#1337");
        Assert.Equal(twin.Config with { Train = twin.Config.Train with { Seed = 7 } }, confirmations.Single(i => i.Id == "dense-small@1e9#7").Config);
    }

    [Fact]
    public void ARunAnotherExperimentAlreadyTrainedIsCopiedNotTrainedAgain()
    {
        using var folder = new TempFolder();
        var dense = TinySpec().Runs[0];
        var first = TinySpec("first") with { Runs = [dense] };
        var trained = Sweep.Run(first, folder.Path, folder.File("first.results.jsonl"), folder.File("runs")).Single();
        Assert.Null(trained.ReusedFrom);

        // The same model, budget, seed and data under another name in another experiment: copied, relabelled.
        var second = TinySpec("second") with { Runs = [dense with { Name = "baseline", Method = "reference" }] };
        var watcher = new Interrupt("none", 0, new CancellationTokenSource());
        var copied = Sweep.Run(second, folder.Path, folder.File("second.results.jsonl"), folder.File("runs"), watcher).Single();
        Assert.Empty(watcher.Started);
        Assert.Equal(("baseline@1e9#1337", "second", "reference", "first/dense@1e9#1337"), (copied.Id, copied.Experiment, copied.Method, copied.ReusedFrom));
        Assert.Equal(trained.Validation.BitsPerByte, copied.Validation.BitsPerByte);
        Assert.Equal("baseline@1e9#1337", Sweep.ReadResults(folder.File("second.results.jsonl")).Single().Key);

        // Other data (here a validation text of its own) is another run: trained, not copied.
        File.WriteAllText(folder.File("validation.txt"), string.Concat(Enumerable.Repeat("A different validation text. ", 400)));
        var third = TinySpec("third") with { Runs = [dense], Data = new SweepData { Validation = "validation.txt" } };
        var trainedAgain = Sweep.Run(third, folder.Path, folder.File("third.results.jsonl"), folder.File("runs"), watcher).Single();
        Assert.Null(trainedAgain.ReusedFrom);
        Assert.Single(watcher.Started);

        // The same spec text in another folder names another validation.txt: other data, trained, not copied from third.
        var elsewhere = folder.Write("elsewhere/validation.txt", string.Concat(Enumerable.Repeat("Yet another validation text. ", 400)));
        var fourth = third with { Name = "fourth" };
        var trainedElsewhere = Sweep.Run(fourth, Path.GetDirectoryName(elsewhere)!, folder.File("fourth.results.jsonl"), folder.File("runs"), watcher).Single();
        Assert.Null(trainedElsewhere.ReusedFrom);
        Assert.Equal(2, watcher.Started.Count);
    }

    /// A spec that names the held-out splits by domain gets each part's score and, as the run's score, all of them together.
    [Fact]
    public void PartsAreScoredEachAndTogetherAndTheirScoresSurviveTheResultsFile()
    {
        using var folder = new TempFolder();
        folder.Write("books.txt", File.ReadAllText(PeerSharp.Data.BundledCorpus.ValidationPath)[..4000]);
        folder.Write("speeches.txt", string.Concat(Enumerable.Repeat("Fellow-citizens of the Senate and House of Representatives: ", 30)));
        TextPart[] parts = [new("books", "books.txt"), new("speeches", "speeches.txt")];
        // The out-of-domain text is the speeches part again, so that its score can be checked against that part's.
        var spec = TinySpec("by-domain") with { Runs = [TinySpec().Runs[1]], Data = new SweepData { ValidationParts = parts, TestParts = parts, OutOfDomain = [new("mail", "speeches.txt")] } };
        var result = Sweep.Run(spec, folder.Path, folder.File("by-domain.results.jsonl"), folder.File("runs")).Single();

        Assert.Equal(["books", "speeches"], result.ValidationParts!.Select(p => p.Name));
        foreach (var (together, byPart) in new[] { (result.Validation, result.ValidationParts!), (result.Test!, result.TestParts!) })
        {
            Assert.Equal(byPart.Sum(p => p.Score.Tokens), together.Tokens);
            Assert.Equal(byPart.Sum(p => p.Score.Loss * p.Score.Tokens) / together.Tokens, together.Loss, 12);
        }
        // The test parts are the validation parts here, scored to the same budget: the same scores.
        Assert.Equal(result.ValidationParts!.Select(p => p.Score.BitsPerByte), result.TestParts!.Select(p => p.Score.BitsPerByte));
        // The out-of-domain text is scored on its own, to the test's length, and is no part of the test score (whose tokens are the parts').
        var outOfDomain = Assert.Single(result.OutOfDomain!);
        Assert.Equal("mail", outOfDomain.Name);
        Assert.Equal(result.TestParts!.Single(p => p.Name == "speeches").Score.BitsPerByte, outOfDomain.Score.BitsPerByte, 12);

        var read = ResultsFile.Read(folder.File("by-domain.results.jsonl")).Single().Result;
        Assert.Equal(JsonSerializer.Serialize(result, Sweep.Compact), JsonSerializer.Serialize(read, Sweep.Compact));
        // A line without parts (every line written before them) reads with none, and is written without the fields.
        var plain = Sweep.Run(TinySpec("plain") with { Runs = [TinySpec().Runs[0]] }, folder.Path, folder.File("plain.results.jsonl"), folder.File("runs")).Single();
        Assert.Null(ResultsFile.Read(folder.File("plain.results.jsonl")).Single().Result.ValidationParts);
        Assert.DoesNotContain("Parts", File.ReadAllText(folder.File("plain.results.jsonl")));
        Assert.DoesNotContain("outOfDomain", File.ReadAllText(folder.File("plain.results.jsonl")));
        Assert.Null(plain.TestParts);
    }

    [Fact]
    public void TestPartsBesideAWholeTestTextAreAnError()
    {
        using var folder = new TempFolder();
        var spec = folder.Write("both.json", """
            { "name": "both", "budgets": [1e9], "runs": [ { "name": "a", "method": "a" } ],
              "data": { "test": "test.txt", "testParts": [ { "name": "books", "path": "books.txt" } ] } }
            """);
        Assert.Contains("both a test text 'test.txt' and test parts", Assert.Throws<PeerSharpException>(() => SweepSpec.Load(spec)).Message);
        var twice = folder.Write("twice.json", """
            { "name": "twice", "budgets": [1e9], "runs": [ { "name": "a", "method": "a" } ],
              "data": { "validationParts": [ { "name": "books", "path": "a.txt" }, { "name": "books", "path": "b.txt" } ] } }
            """);
        Assert.Contains("validation part 'books' twice", Assert.Throws<PeerSharpException>(() => SweepSpec.Load(twice)).Message);
    }

    [Fact]
    public void TimingMeasuresEachConfigurationOnceAndKeepsNoRunFolder()
    {
        using var folder = new TempFolder();
        var spec = TinySpec() with { Budgets = [1e9, 2e9], Seeds = [1, 2] };   // four items per run, one configuration each
        var path = folder.File("tiny-sweep.timings.jsonl");
        var heard = new List<string>();
        var timings = SweepTiming.Measure(spec, folder.Path, path, folder.File("runs"), warmupSteps: 1, timedSteps: 2,
                                          progress: (index, count, run) => heard.Add($"{index + 1}/{count} {run}"));
        Assert.Equal(["1/2 dense", "2/2 peer"], heard);
        Assert.Equal(["dense", "peer"], timings.Select(t => t.Run));
        Assert.All(timings, t => Assert.True(t.SecondsPerStep > 0 && t.TimedSteps == 2 && t.WarmupSteps == 1 && t.Cores == Environment.ProcessorCount));
        Assert.Equal(timings, SweepTiming.Read(path).Values.OrderBy(t => t.Run));
        Assert.False(Directory.Exists(folder.File(Path.Combine("runs", "tiny-sweep", "timing", "dense"))));

        // Timed configurations are skipped; --time-again measures them again, and the later line wins.
        Assert.Empty(SweepTiming.Measure(spec, folder.Path, path, folder.File("runs"), warmupSteps: 1, timedSteps: 2));
        var again = SweepTiming.Measure(spec with { Runs = [spec.Runs[0]] }, folder.Path, path, folder.File("runs"), again: true, warmupSteps: 1, timedSteps: 2);
        Assert.Equal(3, File.ReadAllLines(path).Length);
        Assert.Equal(again.Single(), SweepTiming.Read(path)["dense"]);
    }

    [Fact]
    public void ABadTimingLineIsNamedByFileAndLine()
    {
        using var folder = new TempFolder();
        var path = folder.File("x.timings.jsonl");
        File.WriteAllLines(path, ["", """{"run":"dense","secondsPerStep":0}"""]);
        Assert.Contains($"{path}:2", Assert.Throws<PeerSharpException>(() => SweepTiming.Read(path)).Message);
    }

    static string Comparable(SweepResult result) =>
        JsonSerializer.Serialize(result with { WallSeconds = 0, CpuSeconds = 0, TokensPerSecond = 0, FinishedAt = default }, RunConfig.Json);
}
