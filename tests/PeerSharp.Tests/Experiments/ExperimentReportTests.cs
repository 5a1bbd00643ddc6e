using System.Text.Json;
using System.Text.Json.Nodes;
using PeerSharp.Config;
using PeerSharp.Experiments;
using PeerSharp.Tests.Cli;

namespace PeerSharp.Tests.Experiments;

/// <summary>
/// `peer report` on sample.results.jsonl: 14 hand-made lines of three experiments. isoflop has dense and PEER at
/// two sizes and two budgets (1e15, 1e16), PEER's smaller size at 1e16 with two seeds (validation 2.500 and
/// 2.520); experts has N = 32², 64², 128²; batchnorm one pair at N = 64². The expected rows below are worked out
/// by hand from those lines.
/// </summary>
public class ExperimentReportTests : IDisposable
{
    readonly TempFolder _folder = new();
    readonly string _sample;

    public ExperimentReportTests()
    {
        _sample = _folder.File("sample.results.jsonl");
        File.Copy(Path.Combine(AppContext.BaseDirectory, "Experiments", "sample.results.jsonl"), _sample);
    }

    public void Dispose() => _folder.Dispose();

    string Markdown => _folder.File(Path.Combine("docs", "EXPERIMENTS.md"));
    string Figures => _folder.File(Path.Combine("docs", "figures"));

    string Report(params string[] files)
    {
        ExperimentReport.Write(files, Markdown, Figures);
        return File.ReadAllText(Markdown);
    }

    [Fact]
    public void Table1HasEachMethodsComputeOptimalRunPerBudget()
    {
        var text = Report(_sample);
        // 1e15: dense-m (2.800) beats dense-s (2.900); peer-s (2.750) beats peer-m (2.780) and is the budget's best.
        Assert.Contains("| 1e15 | dense | dense-m | 2 of 2 | 3M | 3M | 2.800 | 2.850 | 7.21 | 1 |", text);
        Assert.Contains("| 1e15 | **peer** | peer-s | 1 of 2 | 5M | 1.2M | 2.750 | 2.800 | 6.96 | 1 |", text);
        // 1e16: dense-s (2.600) beats dense-m (2.620); peer-s over two seeds, mean 2.510 ± 0.014 (2.500, 2.520), beats peer-m (2.530).
        Assert.Contains("| 1e16 | dense | dense-s | 1 of 2 | 1M | 1M | 2.600 | 2.640 | 6.23 | 1 |", text);
        Assert.Contains("| 1e16 | **peer** | peer-s | 1 of 2 | 5M | 1.2M | 2.510 ± 0.014 | 2.550 ± 0.014 | 5.86 ± 0.06 | 2 |", text);
        Assert.DoesNotContain("| peer-m | 2 of 2 |", text);
        Assert.Contains("with the byte tokenizer every token is one byte", text);
    }

    /// Where runs were scored by domain, the tables give books and speeches beside the whole split, and the out-of-domain texts after them; elsewhere they read as before.
    [Fact]
    public void RunsScoredByDomainGetBooksAndSpeechesBesideTogether()
    {
        static JsonNode Part(string name, double bitsPerByte) =>
            new JsonObject { ["name"] = name, ["score"] = new JsonObject { ["loss"] = 1.0, ["bitsPerByte"] = bitsPerByte, ["perplexity"] = 2.7, ["tokens"] = 100, ["layers"] = new JsonArray() } };
        var lines = File.ReadAllLines(_sample).Select(line =>
        {
            var node = JsonNode.Parse(line)!.AsObject();
            if ((string)node["experiment"]! != "isoflop") return line;
            var bpb = (double)node["validation"]!["bitsPerByte"]!;
            node["validationParts"] = new JsonArray(Part("books", bpb - 0.1), Part("speeches", bpb + 0.1));
            node["testParts"] = new JsonArray(Part("books", bpb - 0.05), Part("speeches", bpb + 0.15));
            node["outOfDomain"] = new JsonArray(Part("mail", bpb + 1.0));
            return node.ToJsonString();
        });
        var byDomain = _folder.File("domains.results.jsonl");
        File.WriteAllLines(byDomain, lines);
        var text = Report(byDomain);

        Assert.Contains("| budget | method | compute-optimal run | size rank | parameters | active / token | validation bpb | test bpb | validation books bpb | validation speeches bpb | test books bpb | test speeches bpb | out-of-domain mail bpb | test perplexity / token | seeds |", text);
        Assert.Contains("| 1e15 | dense | dense-m | 2 of 2 | 3M | 3M | 2.800 | 2.850 | 2.700 | 2.900 | 2.750 | 2.950 | 3.800 | 7.21 | 1 |", text);
        Assert.Contains("| 1e16 | **peer** | peer-s | 1 of 2 | 5M | 1.2M | 2.510 ± 0.014 | 2.550 ± 0.014 | 2.410 ± 0.014 | 2.610 ± 0.014 | 2.460 ± 0.014 | 2.660 ± 0.014 | 3.510 ± 0.014 |", text);
        Assert.Contains("| validation bpb | test bpb | validation books bpb | validation speeches bpb | test books bpb | test speeches bpb | out-of-domain mail bpb | usage | finished (UTC) |", text);
        // The experts section's runs have no parts: its table has the columns it always had.
        Assert.Contains("| budget | run | N | h | k | parameters | validation bpb | test bpb | usage | unevenness (nats) | log N | seeds |", text);
    }

    [Fact]
    public void WallClockTableLimitsEachMethodToTheFastestComputeOptimalRun()
    {
        var text = Report(_sample);
        // 1e15's compute-optimal runs took 100 s (dense-m) and 150 s (peer-s): no PEER run finished within 100 s.
        Assert.Contains("| 100 s | dense-m at 1e15 (fastest compute-optimal run) | 2.800 (dense-m at 1e15) | — |", text);
        // 1e16: dense-s took 400 s; within it PEER's best is peer-s at 1e15 (150 s), not peer-m (300 s, 2.780).
        Assert.Contains("| 400 s | dense-s at 1e16 (fastest compute-optimal run) | 2.600 (dense-s at 1e16) | 2.750 (peer-s at 1e15) |", text);
    }

    static string Timing(string run, double secondsPerStep) =>
        JsonSerializer.Serialize(new RunTiming(run, secondsPerStep, 12, 3, "Test CPU", 2, 0.1, DateTime.UnixEpoch), new JsonSerializerOptions(RunConfig.Json) { WriteIndented = false });

    [Fact]
    public void WallClockUsesIdleMachineTimingsWhereEveryRunWasTimed()
    {
        // Steps: dense 90,422 at 1e15 and PEER 81,380 (ten times as many at 1e16), times these seconds per step.
        File.WriteAllLines(_folder.File("isoflop.timings.jsonl"),
            [Timing("dense-s", 0.001), Timing("dense-m", 0.002), Timing("peer-s", 0.0005), Timing("peer-m", 0.003)]);
        var text = Report(_sample);
        // 1e15: peer-s takes 81,380 × 0.5 ms = 41 s, dense-m 181 s: no dense run fits in 41 s.
        Assert.Contains("| 41 s | peer-s at 1e15 (fastest compute-optimal run) | — | 2.750 (peer-s at 1e15) |", text);
        // 1e16: peer-s takes 407 s; dense-m at 1e15 (181 s) is dense's best within it; peer-s at 1e16 just fits.
        Assert.Contains("| 407 s | peer-s at 1e16 (fastest compute-optimal run) | 2.800 (dense-m at 1e15) | 2.510 (peer-s at 1e16) |", text);
        Assert.Contains("would take alone on the machine", text);
        Assert.Contains("Test CPU, 2 cores", text);

        // One configuration untimed: the recorded wall times again, never a mix, and the report says what is missing.
        File.WriteAllLines(_folder.File("isoflop.timings.jsonl"), [Timing("dense-s", 0.001), Timing("dense-m", 0.002), Timing("peer-s", 0.0005)]);
        text = Report(_sample);
        Assert.Contains("| 100 s | dense-m at 1e15 (fastest compute-optimal run) | 2.800 (dense-m at 1e15) | — |", text);
        Assert.Contains("Not yet timed alone: peer-m", text);
    }

    /// A line of another experiment made from a sample line at 1e15 (peer-n32's unless <paramref name="from"/> names
    /// another): its model and scores, with another run name, seed and validation bpb.
    JsonObject SampleLine(string experiment, string run, int seed, double bitsPerByte, string from = "peer-n32@1e15#1")
    {
        var line = JsonNode.Parse(File.ReadLines(_sample).First(l => l.Contains($"\"{from}\"")))!.AsObject();
        line["id"] = $"{run}@1e15#{seed}";
        line["experiment"] = experiment;
        line["run"] = run;
        line["seed"] = seed;
        line["validation"]!["bitsPerByte"] = bitsPerByte;
        return line;
    }

    [Fact]
    public void AblationTablesHaveTheRunsUsageAndUnevenness()
    {
        var text = Report(_sample);
        Assert.Contains("| 1e15 | peer-n32 | 1,024 (32²) | 4 | 8 | 1.13M | 2.900 | — | 90.0% | 1.10 | 6.93 | 1 |", text);
        Assert.Contains("| 1e15 | peer-n128 | 16,384 (128²) | 4 | 8 | 3.1M | 2.820 | — | 40.0% | 1.60 | 9.70 | 1 |", text);
        Assert.Contains("| 1e15 | 4,096 (64²) | 80.0% | 60.0% | 1.20 | 1.40 | 2.840 | 2.860 | 1, 1 |", text);
        // Usage over training: first and last validation of a run, tokens seen.
        Assert.Contains("| batchnorm | peer-no-bn | 1e15 | 4,096 (64²) | off | 2 | 30.0% (83.3M) | 60.0% (167M) | 3.00 → 1.40 |", text);
        // The FLOPs of the compute-optimal PEER model at 1e16.
        Assert.Contains("**peer-s at 1e16**", text);
        Assert.Contains("| PEER experts (h·k = 32) | 600,000 | 30.0% |", text);
    }

    /// The expert-count curve: two seeds per N, and each step up in N judged against the seeds' spread.
    [Fact]
    public void TheExpertCurveSaysWhereBitsPerByteFallBeyondTheSeedSpread()
    {
        var lines = new List<string>();
        // N = 32²: 2.90, 2.92; 64²: 2.80, 2.82 (falls by 0.10, spread 0.014 + 0.014); 128²: 2.79, 2.83 (tied).
        foreach (var (n, seed, bpb) in new[] { (32, 1, 2.90), (32, 2, 2.92), (64, 1, 2.80), (64, 2, 2.82), (128, 1, 2.79), (128, 2, 2.83) })
        {
            var line = SampleLine("expert-curve", $"n{n}", seed, bpb);
            line["config"]!["model"]!["peer"]!["subKeyCount"] = n;
            lines.Add(line.ToJsonString());
        }
        var text = Report(_folder.Write("expert-curve.results.jsonl", string.Join('\n', lines)));
        Assert.Contains("| 1,024 (32²) | 1.13M | 81,380 | 167M | 162760.0 | 2.910 ± 0.014 | — | 90.0 ± 0.0% | 1.10 ± 0.00 | — | 2 |", text);
        Assert.Contains("1,024 (32²) → 4,096 (64²): -0.100 bits per byte, falls beyond the seed spread.", text);
        Assert.Contains("4,096 (64²) → 16,384 (128²): +0.000 bits per byte, within the seed spread (tied).", text);
    }

    /// The isoFLOP section's fitted optimum and the paired comparison, on hand-made lines at 1e15: dense at three sizes
    /// on the parabola bpb = 0.4 (log10 parameters − 6.4)² + 2.5 (its middle size over two seeds), PEER and PKM at one
    /// size with two seeds each.
    [Fact]
    public void IsoFlopFitsTheOptimumPerBudgetAndComparesPeerWithEachBaselineBySeed()
    {
        string Line(string method, string run, double parameters, int seed, double bitsPerByte)
        {
            var line = SampleLine("isoflop", run, seed, bitsPerByte, from: "peer-s@1e15#1");
            (line["method"], line["parameters"]) = (method, parameters);
            line["test"]!["bitsPerByte"] = bitsPerByte + 0.05;
            return line.ToJsonString();
        }
        var text = Report(_folder.Write("isoflop.results.jsonl", string.Join('\n',
            Line("dense", "dense-a", 1e6, 1, 2.564), Line("dense", "dense-b", 3_162_278, 1, 2.494), Line("dense", "dense-b", 3_162_278, 2, 2.514),
            Line("dense", "dense-c", 1e7, 1, 2.644),
            Line("pkm", "pkm-a", 5e6, 1, 2.455), Line("pkm", "pkm-a", 5e6, 2, 2.475),
            Line("peer", "peer-a", 5e6, 1, 2.450), Line("peer", "peer-a", 5e6, 2, 2.470))));

        // Vertex at 10^6.4 = 2.51M parameters, 2.500 bits per byte; the best size tried is dense-b (mean 2.504).
        Assert.Contains("| 1e15 | dense | 3 | 2.51M | 2.500 | dense-b (2.504) | inside the sizes tried |", text);
        Assert.Contains("| 1e15 | peer | 1 | — | — | peer-a (2.460) | fewer than three sizes: no fit |", text);
        // dense − PEER: 0.044 on both seeds, beyond the spread (0.014 + 0.014); PKM − PEER: 0.005, within it.
        Assert.Contains("| 1e15 | dense (dense-b) | peer-a | +0.044 ± 0.000 | PEER ahead | +0.044 ± 0.000 | PEER ahead |", text);
        Assert.Contains("| 1e15 | pkm (pkm-a) | peer-a | +0.005 ± 0.000 | tied | +0.005 ± 0.000 | tied |", text);
    }

    /// At the sample's 1e16, PEER has two seeds and dense one: the difference is given, not judged.
    [Fact]
    public void APairWithOneSeedOnOneSideIsNotJudged()
    {
        var text = Report(_sample);
        // Seed 1 only in common: dense-s 2.600 − peer-s 2.500.
        Assert.Contains("| 1e16 | dense (dense-s) | peer-s | +0.100 | one seed: not judged | +0.100 | one seed: not judged |", text);
        Assert.Contains("| 1e15 | dense | 2 | — | — | dense-m (2.800) | fewer than three sizes: no fit |", text);
    }

    /// The learning-rate section: a table per method and setting of the tables, the best rate, and whether it is at an end of the rates tried.
    [Fact]
    public void TheLearningRateSweepSaysEachMethodsBestRateAndWhetherItIsInside()
    {
        string Line(string run, string feedForward, double rate, double bitsPerByte, double? tablesRate = null)
        {
            var line = SampleLine("lr-sweep", run, 1, bitsPerByte);
            line["method"] = feedForward;
            line["config"]!["model"]!["feedForward"] = feedForward;
            var train = new JsonObject { ["learningRate"] = rate };   // a record without tableState reads as full (RunConfig.UpgradeRecord)
            if (tablesRate is { } r) train["expertLearningRate"] = r;
            line["config"]!["train"] = train;
            return line.ToJsonString();
        }
        var text = Report(_folder.Write("lr-sweep.results.jsonl", string.Join('\n',
            Line("dense-lr1", "dense", 1e-3, 2.90), Line("dense-lr2", "dense", 2e-3, 2.80), Line("dense-lr4", "dense", 4e-3, 2.85),
            Line("peer-lr1", "peer", 1e-3, 2.70), Line("peer-lr2", "peer", 2e-3, 2.75), Line("peer-tables", "peer", 2e-3, 2.65, tablesRate: 0.01))));

        Assert.Contains("| dense | dense-lr2 | 1e15 | 1.13M | 2e-3 | — | **2.800** | — | 1 |", text);
        Assert.Contains("| peer | peer-tables | 1e15 | 1.13M | 2e-3 | fixed 1e-2, full | **2.650** | — | 1 |", text);
        Assert.Contains("| peer | peer-lr1 | 1e15 | 1.13M | 1e-3 | schedule, full | 2.700 | — | 1 |", text);
        Assert.Contains("- dense: best learning rate 2e-3 of 1e-3, 2e-3, 4e-3, validation 2.800 bits per byte; inside the rates tried.", text);
        Assert.Contains("- peer (expert tables: schedule, full): best learning rate 1e-3 of 1e-3, 2e-3, validation 2.700 bits per byte; the lowest rate tried, so a lower one may be better.", text);
        // One rate only with the tables at their own rate: no verdict on it.
        Assert.DoesNotContain("expert tables: fixed 1e-2, full): best", text);
    }

    /// The table-state section: each run's bits per byte at every validation, and the machine its line carries.
    [Fact]
    public void TheTableStateSectionGivesTheCurveAndTheMachineOfEachRun()
    {
        var lines = new List<string>();
        foreach (var (run, bpb, machine) in new[] { ("n32-full", 2.90, "CPU A, AVX2 + FMA"), ("n32-no-momentum", 2.80, null) })
        {
            var line = SampleLine("sparse-updates", run, 1, bpb);
            line["method"] = run;
            line["curve"] = JsonNode.Parse($$"""[{"step":1,"tokensSeen":1,"bitsPerByte":3.5,"layers":[]},{"step":2,"tokensSeen":2,"bitsPerByte":3.0,"layers":[],"text":"A"},{"step":2,"tokensSeen":2,"bitsPerByte":{{bpb}},"layers":[]}]""");
            if (machine is not null) line["machine"] = machine;
            lines.Add(line.ToJsonString());
        }
        var text = Report(_folder.Write("sparse-updates.results.jsonl", string.Join('\n', lines)));
        // By final bpb; the other text's point ("A") is not part of the curve.
        Assert.Contains("| n32-no-momentum | n32-no-momentum | 1,024 (32²) | 1 | 3.500 / 2.800 | 90.0% | 1.10 |", text);
        Assert.Contains("| not recorded |", text);
        Assert.Contains("| n32-full | n32-full | 1,024 (32²) | 1 | 3.500 / 2.900 | 90.0% | 1.10 |", text);
        Assert.Contains("| CPU A, AVX2 + FMA |", text);
        Assert.True(text.IndexOf("| n32-no-momentum |", StringComparison.Ordinal) < text.IndexOf("| n32-full |", StringComparison.Ordinal));
    }

    [Fact]
    public void FiguresAreLinkedAndArePngs()
    {
        var text = Report(_sample);
        foreach (var name in new[] { "isoflop", "isoflop-wallclock", "experts", "usage" })
        {
            Assert.Contains($"](figures/{name}.png)", text);
            var png = File.ReadAllBytes(Path.Combine(Figures, name + ".png"));
            Assert.True(png.Length > 10_000, $"{name}.png has only {png.Length} bytes");
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        }
        // No active-experts results, so no figure for them.
        Assert.False(File.Exists(Path.Combine(Figures, "active.png")));
    }

    [Fact]
    public void HeaderSaysWhatWasReadAndWhatIsNotYetRun()
    {
        var text = Report(_sample);
        Assert.StartsWith("# Experiments\n\nGenerated by `peer report`", text);
        Assert.Contains("do not edit this file", text);
        Assert.Contains($"| {_sample} | 14 | batchnorm, experts, isoflop | 2026-12-05 10:00 |", text);
        Assert.Contains("Not yet run (no results read): `active`, `retrieval-screen`, `retrieval`, `expert-curve`, `expert-curve-flops`, `sparse-updates`, `isoflop-u`, `moe-routing`, `lr-sweep`.", text);
        Assert.Contains("## 3. Number of active experts h·k (paper Figure 3b)\n\nNot yet run: no results of experiment `active` were read.", text);
        Assert.DoesNotContain("TODO", text);

        var empty = _folder.Write("empty.results.jsonl", "");
        var nothing = Report(empty);
        foreach (var experiment in new[] { "isoflop", "experts", "active", "batchnorm" })
            Assert.Contains($"Not yet run: no results of experiment `{experiment}` were read.", nothing);
        Assert.Contains("Not yet run: no PEER run of `experts`, `batchnorm` or `isoflop`", nothing);
    }

    [Fact]
    public void SpecBesideTheResultsListsTheRunsStillToCome()
    {
        // The sample's runs plus peer-l at 1e15 only: 4 runs × 2 budgets + 1 = 9 for seed 1; peer-l is missing
        // (peer-s's second seed, not in the spec, does not count).
        _folder.Write("isoflop.json", """
            {
              "name": "isoflop", "description": "Which method is best at equal training FLOPs?",
              "budgets": [1e15, 1e16], "seeds": [1],
              "runs": [
                { "name": "dense-s", "method": "dense" }, { "name": "dense-m", "method": "dense" },
                { "name": "peer-s", "method": "peer" }, { "name": "peer-m", "method": "peer" },
                { "name": "peer-l", "method": "peer", "budgets": [1e15] }
              ]
            }
            """);
        var text = Report(_sample);
        Assert.Contains("Which method is best at equal training FLOPs?", text);
        Assert.Contains("Not yet run: 1 of the spec's 9 runs: peer-l at 1e15 (seed 1).", text);
        Assert.Contains($"No spec at {Path.Combine(_folder.Path, "experts.json")}", text);
    }

    [Fact]
    public void ActiveExpertsSeriesComeFromTheConfigs()
    {
        // h ∈ {2, 4, 8} at k = 8, and k ∈ {4, 16} at h = 4: (4, 8) is in both series.
        var template = JsonSerializer.Deserialize<SweepResult>(File.ReadLines(_sample).First(l => l.Contains("\"peer-n64\"")), RunConfig.Json)!;
        var lines = new[] { (2, 8), (4, 8), (8, 8), (4, 4), (4, 16) }.Select(hk =>
        {
            var (h, k) = hk;
            var config = template.Config with { Model = template.Config.Model with { PeerOptions = template.Config.Model.PeerOptions with { HeadCount = h, TopK = k } } };
            var result = template with { Experiment = "active", Run = $"peer-h{h}k{k}", Id = $"peer-h{h}k{k}@1e15#1", Config = config, Validation = template.Validation with { BitsPerByte = 3.0 - h * k / 100.0 } };
            return JsonSerializer.Serialize(result, new JsonSerializerOptions(RunConfig.Json) { WriteIndented = false });
        });
        var active = _folder.Write("active.results.jsonl", string.Join('\n', lines) + "\n");

        var text = Report(_sample, active);
        Assert.Contains("| 1e15 | peer-h2k8 | 4,096 (64²) | 2 | 8 | 16 | h varied, k = 8 |", text);
        Assert.Contains("| 1e15 | peer-h4k8 | 4,096 (64²) | 4 | 8 | 32 | h varied, k = 8; k varied, h = 4 |", text);
        Assert.Contains("| 1e15 | peer-h4k16 | 4,096 (64²) | 4 | 16 | 64 | k varied, h = 4 | 1.2M | 2.360 |", text);
        Assert.True(new FileInfo(Path.Combine(Figures, "active.png")).Length > 10_000);
        Assert.DoesNotContain("Not yet run: no results of experiment `active`", text);
    }

    [Fact]
    public void MalformedLineIsNamedByFileAndLine()
    {
        var lines = File.ReadAllLines(_sample);
        lines[4] = lines[4][..100];   // a line cut short, as by a crash mid-write
        var bad = _folder.Write("bad.results.jsonl", string.Join('\n', lines));
        var error = Assert.Throws<PeerSharpException>(() => Report(bad));
        Assert.StartsWith($"{bad}:5 is not a sweep result", error.Message);
        Assert.DoesNotContain("\n", error.Message);
        Assert.False(File.Exists(Markdown), "a failed report must not write anything");
    }

    [Fact]
    public void LineWithoutValidationIsNamed()
    {
        var lines = File.ReadAllLines(_sample);
        var withoutLayers = JsonNode.Parse(lines[2])!;
        withoutLayers["validation"]!["layers"] = null;
        lines[2] = withoutLayers.ToJsonString();
        lines[6] = lines[6].Replace("\"validation\":", "\"unscored\":");
        var bad = _folder.Write("bad.results.jsonl", string.Join('\n', lines));
        var error = Assert.Throws<PeerSharpException>(() => Report(bad));
        Assert.Equal($"{bad}:3 is not a sweep result: it has no validation layers", error.Message);

        lines[2] = File.ReadLines(_sample).ElementAt(2);
        File.WriteAllText(bad, string.Join('\n', lines));
        error = Assert.Throws<PeerSharpException>(() => Report(bad));
        Assert.StartsWith($"{bad}:7 is not a sweep result: ", error.Message);
        Assert.Contains("unscored", error.Message);
    }

    [Fact]
    public void SameRunTwiceIsNamed()
    {
        var again = _folder.Write("again.results.jsonl", File.ReadLines(_sample).First() + "\n");
        var error = Assert.Throws<PeerSharpException>(() => Report(_sample, again));
        Assert.Equal($"run 'dense-s@1e15#1' of experiment 'isoflop' appears twice, at {_sample}:1 and {again}:1; expected each run once", error.Message);
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        var error = Assert.Throws<PeerSharpException>(() => Report(_folder.File("nope.results.jsonl")));
        Assert.Contains("nope.results.jsonl' does not exist", error.Message);
    }

    [Fact]
    public void CommandWritesTheReportAndFailsInOneLine()
    {
        var ok = PeerProcess.Run(_folder.Path, "report", _sample, "--out", "out/EXPERIMENTS.md", "--figures", "out/figures");
        Assert.True(ok.ExitCode == 0, ok.Error);
        Assert.Contains("wrote out/EXPERIMENTS.md", ok.Output);
        Assert.Contains("](figures/isoflop.png)", File.ReadAllText(_folder.File("out/EXPERIMENTS.md")));
        Assert.True(File.Exists(_folder.File("out/figures/usage.png")));

        var bad = _folder.Write("bad.results.jsonl", "{\"id\": \n");
        var failed = PeerProcess.Run(_folder.Path, "report", bad);
        Assert.NotEqual(0, failed.ExitCode);
        var error = failed.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(error.Length == 1, failed.Error);
        Assert.StartsWith($"peer: {bad}:1 is not a sweep result", error[0]);
        Assert.False(Directory.Exists(_folder.File("docs")));
    }
}
