using System.Text.Json.Nodes;
using PeerSharp.Config;
using PeerSharp.Experiments;
using PeerSharp.Growth;
using PeerSharp.Training;

namespace PeerSharp.Tests.Experiments;

/// <summary>The lifelong experiment end to end on the tiny preset: phase 1, growth, five phase-2 arms, the report, a rerun that skips.</summary>
public class LifelongTests
{
    static LifelongSpec TinySpec() => new()
    {
        Name = "tiny-lifelong",
        Preset = "tiny",
        Base = JsonNode.Parse("""{ "train": { "evalTokens": 1024, "warmupSteps": 2 } }""")!.AsObject(),
        DomainB = new SweepData { Train = "b-train.txt", Validation = "b-validation.txt" },
        DomainC = new SweepData { Train = "c-train.txt", Validation = "c-validation.txt" },
        Phase1Steps = 12,
        Phase3Steps = 3,
        Phase2Steps = 6,
        EvalInterval = 3,
        Phase2 = JsonNode.Parse("""{ "learningRate": 0.001, "minLearningRateRatio": 1 }""")!.AsObject(),
        Growth = new GrowthOptions { SubKeyCount = 16 },
        Phase1 =
        [
            new SweepRun { Name = "dense", Method = "dense", Config = JsonNode.Parse("""{ "model": { "feedForward": "dense" } }""")!.AsObject() },
            new SweepRun { Name = "peer", Method = "peer" },
        ],
        Arms =
        [
            new LifelongArm { Name = "dense-continued", From = "dense" },
            new LifelongArm { Name = "peer-continued", From = "peer" },
            new LifelongArm { Name = "peer-grown-old-frozen", From = "peer", Grow = true, Freeze = new FreezeConfig { OldSubKeyCount = 8 } },
            new LifelongArm { Name = "peer-grown-new-and-queries", From = "peer", Grow = true, Freeze = new FreezeConfig { OldSubKeyCount = 8, SubKeys = true, Backbone = true } },
            new LifelongArm { Name = "peer-grown-routed", From = "peer", Grow = true, Growth = new GrowthOptions { SubKeyCount = 16, Placement = KeyPlacement.Queries, GateLeak = 0.01, PlacementTokens = 4096 } },
            new LifelongArm { Name = "peer-replay", From = "peer", Train = JsonNode.Parse("""{ "replayFraction": 0.25, "replayTokens": 65536 }""")!.AsObject() },
            new LifelongArm { Name = "peer-anchored", From = "peer", Train = JsonNode.Parse("""{ "anchorPull": 500 }""")!.AsObject() },
            new LifelongArm { Name = "dense-grown-hidden", From = "dense", GrowHidden = 6, Freeze = new FreezeConfig { OldHiddenUnits = 128 } },
            new LifelongArm { Name = "peer-alone-on-b", From = "peer", FromScratch = true },
            new LifelongArm { Name = "peer-then-c", From = "peer-continued" },
        ],
    };

    [Fact]
    public void PhasesArmsAndReportRunEndToEndAndARerunSkipsThem()
    {
        using var folder = new TempFolder();
        // Domain B: text unlike the books, numbers and ledgers.
        var lines = Enumerable.Range(0, 3000).Select(i => $"Item {i}: receipts {i * 37 % 1000} dollars, expenditures {i * 91 % 1000} dollars.");
        folder.Write("b-train.txt", string.Join("\n", lines.Take(2500)));
        folder.Write("b-validation.txt", string.Join("\n", lines.Skip(2500)));
        // Domain C: a third kind of text, lists of dates and places.
        var c = Enumerable.Range(0, 3000).Select(i => $"On day {i % 28 + 1} of month {i % 12 + 1} we reached station {i * 13 % 97}, {(i % 2 == 0 ? "north" : "south")} of the river.");
        folder.Write("c-train.txt", string.Join("\n", c.Take(2500)));
        folder.Write("c-validation.txt", string.Join("\n", c.Skip(2500)));
        var spec = TinySpec();
        var results = folder.File("tiny-lifelong.results.jsonl");
        var runs = folder.File("runs");

        var finished = Lifelong.Run(spec, folder.Path, results, runs);

        Assert.Equal(["dense/A#1337", "peer/A#1337", "dense-continued/B#1337", "peer-continued/B#1337", "peer-grown-old-frozen/B#1337", "peer-grown-new-and-queries/B#1337", "peer-grown-routed/B#1337",
                      "peer-replay/B#1337", "peer-anchored/B#1337", "dense-grown-hidden/B#1337", "peer-alone-on-b/B#1337", "peer-then-c/C#1337"],
                     finished.Select(r => r.Id));
        var outcomes = LifelongOutcome.Of(finished);
        Assert.Equal(9, outcomes.Count);
        foreach (var o in outcomes.Where(o => o.Result.ScratchOf is null))
        {
            Assert.Equal(6, o.Result.Steps);
            Assert.Equal([12L, 15, 18], o.Result.Curve.Where(p => p.Text == "A").Select(p => p.Step));
            Assert.Equal([12L, 15, 18], o.Result.Curve.Where(p => p.Text is null).Select(p => p.Step));
        }
        // Growth happened (16² experts) and nearly preserved what the model computes: its phase 2 starts where PEER's does.
        var (continued, grown) = (outcomes[1], outcomes[2]);
        Assert.Equal(16, grown.Result.Config.Model.PeerOptions.SubKeyCount);
        Assert.InRange(grown.AStart - continued.AStart, -0.02, 0.02);
        Assert.True(outcomes[0].Learning > 0, "the dense model should learn domain B");

        // Grown arms record where each domain's tokens go, at growth and at the end; the others do not.
        Assert.Null(continued.Result.Routing);
        var routed = outcomes[4].Result;
        Assert.Equal(["A grown", "B grown", "A end", "B end"], routed.Routing!.Select(r => $"{r.Text} {r.When}"));
        Assert.Single(Directory.GetDirectories(Path.Combine(runs, spec.Name)), d => d.EndsWith("_grown-16-queries-leak0.01", StringComparison.Ordinal));   // a growth of its own

        // The baselines: replay reads A's training text, the pull pulls toward where phase 2 started (A's model), so
        // the anchored arm ends nearer its start than the plain fine-tuning from the same model: at η·λ = 0.5 a step
        // halves the distance, so it stays near two steps' worth of updates where fine-tuning goes six.
        var plan = Lifelong.Plan(spec, folder.Path, runs);
        Assert.Equal(PeerSharp.Data.BundledCorpus.TrainPath, plan.Single(i => i.Id == "peer-replay/B#1337").ReplayFrom);
        var anchoredItem = plan.Single(i => i.Id == "peer-anchored/B#1337");
        Assert.Equal(anchoredItem.StartFrom, anchoredItem.AnchorFrom);
        Assert.Null(plan.Single(i => i.Id == "peer-continued/B#1337").AnchorFrom);
        Assert.True(DistanceFromStart(runs, plan.Single(i => i.Id == "peer-anchored/B#1337")) < 0.5 * DistanceFromStart(runs, plan.Single(i => i.Id == "peer-continued/B#1337")),
                    $"anchored {DistanceFromStart(runs, plan.Single(i => i.Id == "peer-anchored/B#1337"))} against fine-tuned {DistanceFromStart(runs, plan.Single(i => i.Id == "peer-continued/B#1337"))}");

        // Phase 3 continues the phase-2 arm's end on C and scores all three domains; where it starts, A and B score
        // what the phase-2 arm ended with (the same model on the same tokens).
        var third = finished.Single(r => r.Id == "peer-then-c/C#1337");
        Assert.Equal("peer-continued/B#1337", third.ContinuesFrom);
        Assert.Equal(3, third.Steps);
        foreach (var domain in new[] { "A", "B", null })
            Assert.Equal([18L, 21], third.Curve.Where(p => p.Text == domain).Select(p => p.Step));
        Assert.Equal(continued.AEnd, third.Curve.First(p => p.Text == "A").BitsPerByte, 9);
        Assert.Equal(continued.BEnd, third.Curve.First(p => p.Text == "B").BitsPerByte, 9);
        var phase3 = Assert.Single(Phase3Outcome.Of(finished, outcomes));
        Assert.Same(continued, phase3.Before);
        Assert.True(phase3.Learning > 0, "the model should learn domain C");

        // Forward transfer's reference: PEER's phase-1 model, freshly initialised, trained on B for phase 2's 6 steps
        // from step 0 (A scored beside B), not from A's checkpoint.
        var alone = outcomes.Single(o => o.Result.ScratchOf is not null);
        Assert.Equal("peer/A#1337", alone.Result.ScratchOf);
        Assert.Null(alone.Result.ContinuesFrom);
        Assert.Null(plan.Single(i => i.Id == "peer-alone-on-b/B#1337").StartFrom);
        Assert.Equal(finished.Single(r => r.Id == "peer/A#1337").Config.Model, alone.Result.Config.Model);
        Assert.Equal(6, alone.Result.Steps);
        Assert.Equal([3L, 6], alone.Result.Curve.Where(p => p.Text == "A").Select(p => p.Step));
        Assert.True(alone.BEnd > continued.BEnd, $"six steps on B from nothing ({alone.BEnd}) should leave B worse than six after A ({continued.BEnd})");

        var report = folder.File("report/RESULTS.md");
        LifelongReport.Write(results, report, folder.File("report"));
        var text = File.ReadAllText(report);
        Assert.Contains("| peer-grown-old-frozen | 256 (16²) | old experts (8²) |", text);
        Assert.Contains("Routing to the grown experts", text);
        Assert.Contains("| peer-replay | 1 |", text);
        Assert.Contains("replay 25.0% of A (65.5K tokens)", text);
        Assert.Contains("L2 pull λ = 500", text);
        Assert.Contains("| peer-then-c | peer-continued | 1 |", text);
        // Forward transfer: B alone minus B after A, for the arms that continue PEER's phase-1 model; none for dense's.
        Assert.Contains($"| {(alone.BEnd - continued.BEnd).ToString("+0.000;-0.000")} | fine-tuning |", text.Split('\n').Single(l => l.StartsWith("| peer-continued | 1 |", StringComparison.Ordinal)));
        Assert.Contains("| — | fine-tuning |", text.Split('\n').Single(l => l.StartsWith("| dense-continued | 1 |", StringComparison.Ordinal)));
        Assert.StartsWith("| peer-alone-on-b | peer | 1 |", Assert.Single(text.Split('\n'), l => l.StartsWith("| peer-alone-on-b |", StringComparison.Ordinal)));   // its own table only
        Assert.Contains("| dense-grown-hidden | dense (192 hidden) | old hidden units (128) |", text);   // 6 · d_model 32
        Assert.True(File.Exists(folder.File("report/lifelong-peer-then-c-s1337.png")));
        Assert.Contains("| peer-grown-routed | 1337 | B | end |", text);
        Assert.True(File.Exists(folder.File("report/lifelong-peer-grown-old-frozen-s1337.png")));
        Assert.True(File.Exists(folder.File("report/lifelong-all-A.png")));
        Assert.True(File.Exists(folder.File("report/lifelong-tradeoff-peer.png")));
        Assert.True(File.Exists(folder.File("report/lifelong-tradeoff-dense.png")));
        Assert.False(File.Exists(folder.File("report/lifelong-tradeoff-peer-alone-on-b.png")));

        var observer = new Recorder();
        var again = Lifelong.Run(spec, folder.Path, results, runs, observer);
        Assert.Equal(finished.Select(r => r.Id), again.Select(r => r.Id));
        Assert.Empty(observer.Started);

        // A phase-3 arm whose from changes has the same settings but another start: refused, not skipped as done.
        var moved = spec with { Arms = [.. spec.Arms.Select(a => a.Name == "peer-then-c" ? a with { From = "peer-replay" } : a)] };
        var e = Assert.Throws<PeerSharpException>(() => Lifelong.Run(moved, folder.Path, results, runs));
        Assert.Contains("continued from peer-continued/B#1337, but the spec now continues it from peer-replay/B#1337", e.Message);

        // A fresh machine: the committed results file, no run folders, and the spec has gained a phase-2 arm from
        // PEER's phase-1 model and a phase-3 arm from a grown arm. Each run they continue is trained again into its
        // folder, reproduces its recorded score (or the call refuses), and keeps its one results line.
        Directory.Delete(runs, recursive: true);
        var extended = spec with
        {
            Arms = [.. spec.Arms, new LifelongArm { Name = "peer-continued-faster", From = "peer", Train = JsonNode.Parse("""{ "learningRate": 0.003 }""")!.AsObject() },
                    new LifelongArm { Name = "peer-grown-routed-then-c", From = "peer-grown-routed" }],
        };
        var retrainer = new Recorder();
        var extendedRun = Lifelong.Run(extended, folder.Path, results, runs, retrainer);
        Assert.Equal(["peer/A#1337", "peer-grown-routed/B#1337"], retrainer.Retrained);
        Assert.Equal(["peer-continued-faster/B#1337", "peer-grown-routed-then-c/C#1337"], retrainer.Started);
        Assert.Equal(finished.Count + 2, File.ReadLines(results).Count());
        Assert.Equal(finished.Count + 2, extendedRun.Count);

        // A run that trains again to another score than its line records: the arms after it would continue another
        // model, so the call refuses and says what to remove.
        Directory.Delete(runs, recursive: true);
        var recordedLines = File.ReadAllLines(results);
        var peerLine = JsonNode.Parse(recordedLines.Single(l => l.Contains("\"id\":\"peer/A#1337\"", StringComparison.Ordinal)))!;
        peerLine["validation"]!["bitsPerByte"] = 9.5;
        File.WriteAllLines(results, [.. recordedLines.Where(l => !l.Contains("\"id\":\"peer/A#1337\"", StringComparison.Ordinal)), peerLine.ToJsonString()]);
        var more = extended with { Arms = [.. extended.Arms, new LifelongArm { Name = "peer-continued-slower", From = "peer", Train = JsonNode.Parse("""{ "learningRate": 0.0003 }""")!.AsObject() }] };
        var refused = Assert.Throws<PeerSharpException>(() => Lifelong.Run(more, folder.Path, results, runs));
        Assert.Contains("peer/A#1337 trained again reaches", refused.Message);
        Assert.Contains("not the recorded 9.5", refused.Message);
        // … and so does a rerun: the run that did not reproduce was moved aside, not left to pass for the recorded one.
        Assert.Contains("not the recorded 9.5", Assert.Throws<PeerSharpException>(() => Lifelong.Run(more, folder.Path, results, runs)).Message);
        var peerFolder = Path.Combine(runs, spec.Name, Lifelong.Plan(more, folder.Path, runs).Single(i => i.Id == "peer/A#1337").FolderName);
        Assert.False(File.Exists(Path.Combine(peerFolder, "checkpoint.json")));
        Assert.True(File.Exists(Path.Combine(peerFolder + ".mismatch", "checkpoint.json")));
    }

    /// <summary>The L2 distance of an arm's final weights from those it started phase 2 with.</summary>
    static double DistanceFromStart(string runsFolder, SweepItem item)
    {
        var (start, _) = PeerSharp.Checkpoints.Checkpoint.LoadModel(item.StartFrom!);
        var (end, _) = PeerSharp.Checkpoints.Checkpoint.LoadModel(Path.Combine(runsFolder, "tiny-lifelong", item.FolderName, "checkpoint.json"));
        using (start) using (end)
        {
            var before = start.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            return Math.Sqrt(end.named_parameters().Sum(p => (p.parameter - before[p.name]).square().sum().item<float>()));
        }
    }

    [Fact]
    public void AnArmFromAnUnknownRunIsAnError()
    {
        using var folder = new TempFolder();
        var path = folder.Write("bad.json", """{ "name": "bad", "phase1": [ { "name": "peer", "method": "peer" } ], "arms": [ { "name": "x", "from": "dense" } ] }""");
        var e = Assert.Throws<PeerSharpException>(() => LifelongSpec.Load(path));
        Assert.Contains("arm 'x' continues 'dense', which is neither a phase-1 run nor an arm", e.Message);
        var grownAlone = folder.Write("grown.json", """{ "name": "bad", "phase1": [ { "name": "peer", "method": "peer" } ], "growth": { "subKeyCount": 16 }, "arms": [ { "name": "x", "from": "peer", "fromScratch": true, "grow": true } ] }""");
        Assert.Contains("arm 'x' trains from scratch but grows or freezes", Assert.Throws<PeerSharpException>(() => LifelongSpec.Load(grownAlone)).Message);
    }

    sealed class Recorder : ISweepObserver
    {
        public List<string> Started { get; } = [];
        public List<string> Retrained { get; } = [];
        public void Retraining(SweepItem item, string why) => Retrained.Add(item.Id);
        public void RunStarted(int index, int count, SweepItem item, long startStep, double? remainingSeconds) => Started.Add(item.Id);
        public void StepCompleted(SweepItem item, StepReport step) { }
        public void RunFinished(int index, int count, SweepItem item, SweepResult result, bool skipped) { }
    }
}
