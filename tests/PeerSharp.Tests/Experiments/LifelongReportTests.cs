using System.Text.Json;
using PeerSharp.Config;
using PeerSharp.Experiments;

namespace PeerSharp.Tests.Experiments;

/// <summary>The lifelong report's paired comparison of each arm with plain fine-tuning, on made-up two-seed results.</summary>
public class LifelongReportTests
{
    static readonly RunConfig Tiny = Presets.Get("tiny");

    // A phase-2 line: A scored at aStart then aEnd, B at bStart then bEnd; the phase-1 model it continues has 1,000 parameters.
    static SweepResult Arm(string run, long seed, double aStart, double aEnd, double bStart, double bEnd, TrainConfig? train = null, long parameters = 1000) => new()
    {
        Id = Lifelong.Phase2Id(run, seed), Experiment = "made-up", Run = run, Method = run, Budget = 1, Seed = seed,
        Config = Tiny with { Train = (train ?? Tiny.Train with { LearningRate = 1e-3 }) with { Seed = seed } },
        Validation = new Score(bEnd, bEnd, 1, 1, []), Parameters = parameters, ContinuesFrom = Lifelong.Phase1Id("peer", seed),
        Curve = [new CurvePoint(10, 0, aStart, [], "A"), new CurvePoint(10, 0, bStart, []), new CurvePoint(20, 0, aEnd, [], "A"), new CurvePoint(20, 0, bEnd, [])],
    };

    [Fact]
    public void EachArmIsPairedBySeedWithPlainFineTuningAtItsLearningRateAndJudgedBeyondTheSpread()
    {
        using var folder = new TempFolder();
        var results = folder.File("made-up.results.jsonl");
        var lines = new List<SweepResult>();
        foreach (var seed in new long[] { 1, 2 })
        {
            var jitter = seed == 1 ? 0.01 : -0.01;
            lines.Add(new SweepResult { Id = Lifelong.Phase1Id("peer", seed), Experiment = "made-up", Run = "peer", Method = "peer", Budget = 1, Seed = seed,
                                        Config = Tiny, Validation = new Score(2, 2, 1, 1, []), Parameters = 1000 });
            // Arms that are not plain fine-tuning come first in the file, so the reference is found by what it is, not where.
            // Replay forgets 0.2 less at the same learning: an average 0.1 lower, beyond a spread of 0.014 + 0.014.
            lines.Add(Arm("peer-replay", seed, 2.0, 2.2 - jitter, 3.0, 2.2, Tiny.Train with { LearningRate = 1e-3, ReplayFraction = 0.25 }));
            // Grown (more parameters than the model it continues): not plain fine-tuning, so compared with it.
            lines.Add(Arm("peer-grown", seed, 2.0, 2.4 + jitter, 3.0, 2.2, parameters: 4000));
            lines.Add(Arm("peer-continued", seed, 2.0, 2.4 + jitter, 3.0, 2.2));
            // A pull that changes the average by 0.005, well inside the spread.
            lines.Add(Arm("peer-pulled", seed, 2.0, 2.41 + jitter, 3.0, 2.2, Tiny.Train with { LearningRate = 1e-3, AnchorPull = 10 }));
            // Plain fine-tuning at another rate: a point of the trade-off, no row and not a reference.
            lines.Add(Arm("peer-continued-lr3e-3", seed, 2.0, 2.6, 3.0, 2.0, Tiny.Train with { LearningRate = 3e-3 }));
        }
        File.WriteAllLines(results, lines.Select(r => JsonSerializer.Serialize(r, Sweep.Compact)));

        LifelongReport.Write(results, folder.File("report/RESULTS.md"), folder.File("report"));
        var text = File.ReadAllLines(folder.File("report/RESULTS.md"));
        string Row(string arm) => Assert.Single(text, l => l.StartsWith($"| {arm} | peer-continued |", StringComparison.Ordinal));

        Assert.Equal("| peer-replay | peer-continued | 2 | -0.100 ± 0.014 | +0.200 ± 0.028 | +0.000 ± 0.000 | better |", Row("peer-replay"));
        Assert.Equal("| peer-pulled | peer-continued | 2 | +0.005 ± 0.000 | -0.010 ± 0.000 | +0.000 ± 0.000 | tied |", Row("peer-pulled"));
        Assert.EndsWith("| tied |", Row("peer-grown"));
        Assert.DoesNotContain(text, l => l.StartsWith("| peer-continued-lr3e-3 | peer-continued |", StringComparison.Ordinal));
        Assert.DoesNotContain(text, l => l.StartsWith("| peer-continued | peer-continued |", StringComparison.Ordinal));
    }
}
