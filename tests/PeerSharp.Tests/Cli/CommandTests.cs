using System.Text.RegularExpressions;
using PeerSharp.Model;
namespace PeerSharp.Tests.Cli;

/// <summary>The commands a user runs, end to end through the real program.</summary>
public class CommandTests : IDisposable
{
    readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void TrainEvalGenerateInfo()
    {
        var run = Path.Combine(_folder.Path, "run");
        var train = PeerProcess.Run(_folder.Path, "train", "--preset", "tiny", "--steps", "20", "--out", run, "--sample-tokens", "20");
        Assert.True(train.ExitCode == 0, train.Error);
        Assert.Contains("bits per byte", train.Output);
        Assert.NotNull(PeerSharp.Checkpoints.Checkpoint.Read(Path.Combine(run, "checkpoint.json")).OptimizerFile);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(run, "tensorboard"), "*", SearchOption.AllDirectories));

        var eval = PeerProcess.Run(_folder.Path, "eval", "--checkpoint", Path.Combine(run, "checkpoint.json"), "--tokens", "4096");
        Assert.True(eval.ExitCode == 0, eval.Error);
        Assert.Contains("bits per byte", eval.Output);
        Assert.Contains("expert usage", eval.Output);

        var generate = PeerProcess.Run(_folder.Path, "generate", "--checkpoint", Path.Combine(run, "checkpoint"), "--prompt", "Alice", "--tokens", "30");
        Assert.True(generate.ExitCode == 0, generate.Error);
        Assert.StartsWith("Alice", generate.Output);
        Assert.True(generate.Output.TrimEnd('\n').Length > "Alice".Length);

        // --map-tables: the same scores and text from tables mapped from the file.
        var mappedEval = PeerProcess.Run(_folder.Path, "eval", "--checkpoint", Path.Combine(run, "checkpoint.json"), "--tokens", "4096", "--map-tables");
        Assert.True(mappedEval.ExitCode == 0, mappedEval.Error);
        Assert.Equal(eval.Output, mappedEval.Output);
        var mappedGenerate = PeerProcess.Run(_folder.Path, "generate", "--checkpoint", Path.Combine(run, "checkpoint"), "--prompt", "Alice", "--tokens", "30", "--map-tables");
        Assert.True(mappedGenerate.ExitCode == 0, mappedGenerate.Error);
        Assert.Equal(generate.Output, mappedGenerate.Output);

        // Resume to more steps continues from the checkpoint's step.
        var resumed = PeerProcess.Run(_folder.Path, "train", "--resume", Path.Combine(run, "checkpoint.json"), "--steps", "25", "--out", run, "--sample-tokens", "0");
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("at step 20", resumed.Output);
        Assert.Contains("step     25/25", resumed.Output);
        var steps = PeerSharp.Training.MetricsLog.Read(Path.Combine(run, "metrics.jsonl")).Where(r => r.Loss is not null).Select(r => r.Step);
        Assert.Equal(Enumerable.Range(1, 25).Select(i => (long)i), steps);
        Assert.True(new FileInfo(Path.Combine(run, "curves.png")).Length > 1000);

        var info = PeerProcess.Run(_folder.Path, "info", "--preset", "tiny");
        Assert.True(info.ExitCode == 0, info.Error);
        Assert.Contains("PEER experts", info.Output);
        Assert.Contains("total", info.Output);
    }

    [Fact]
    public void BenchWritesItsReport()
    {
        var report = Path.Combine(_folder.Path, "PERFORMANCE.md");
        var bench = PeerProcess.Run(_folder.Path, "bench", "--quick", "--no-model", "--sizes", "16,32", "--tokens", "256",
            "--steps", "1", "--warmup", "0", "--output", report);
        Assert.True(bench.ExitCode == 0, bench.Error);
        var text = File.ReadAllText(report);
        foreach (var row in new[] { "(a) dense FFW 4·d", "(b) dense FFW, equal FLOPs", "(c) PEER tensor ops + AdamW", "(d) PEER fused + sparse AdamW",
                                  "(d) PEER fused + sparse AdamW, row-wise state", "(d) PEER fused + sparse AdamW, row-wise-no-momentum state" })
            Assert.Contains(row, text);
        Assert.Contains("32²", text);
        // Each fused kernel beside its reference, with the speed-up.
        foreach (var kernel in new[] { "product-key retrieval (steps 2-3)", "experts (step 5)", "expert-table update (AdamW)", "expert-table update (full → row-wise state)" })
            Assert.Matches($@"\| {Regex.Escape(kernel)} \| 32² \|.*\| \*\*[\d.]+×\*\* \|", text);
    }

    /// --set reaches any field, PKM's included, by its JSON path; the flags are applied after it, so they win.
    [Fact]
    public void SetAssignsAnyFieldAndTheFlagsOverrideIt()
    {
        var folder = Path.Combine(_folder.Path, "set");
        var init = PeerProcess.Run(_folder.Path, "init", "--preset", "tiny", "--set", "model.pkm.subKeyCount=16", "--set", "model.peer.headCount=4",
                                   "--set", "model.feedForward=pkm", "--set", "model.peer.topK=1", "--topk", "3", "--out", folder);
        Assert.True(init.ExitCode == 0, init.Error);
        var model = PeerSharp.Checkpoints.Checkpoint.Read(Path.Combine(folder, "checkpoint.json")).Config.Model;
        Assert.Equal((16, 4, 3, FeedForwardKind.Pkm), (model.PkmOptions.SubKeyCount, model.PeerOptions.HeadCount, model.PeerOptions.TopK, model.FeedForward));
    }

    [Fact]
    public void InitWritesAModelThatGeneratesFromMappedTablesAndBenchTimesIt()
    {
        var folder = Path.Combine(_folder.Path, "fresh");
        var init = PeerProcess.Run(_folder.Path, "init", "--preset", "tiny", "--experts", "1024", "--out", folder);
        Assert.True(init.ExitCode == 0, init.Error);
        Assert.Contains("written 100 %", init.Output);
        var checkpoint = Path.Combine(folder, "checkpoint.json");
        Assert.Equal(0, PeerSharp.Checkpoints.Checkpoint.Read(checkpoint).Step);

        var again = PeerProcess.Run(_folder.Path, "init", "--preset", "tiny", "--out", folder);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains($"folder '{folder}' already holds a checkpoint; choose another --out", again.Error);

        var loaded = PeerProcess.Run(_folder.Path, "generate", "--checkpoint", checkpoint, "--tokens", "20", "--seed", "3");
        var mapped = PeerProcess.Run(_folder.Path, "generate", "--checkpoint", checkpoint, "--tokens", "20", "--seed", "3", "--map-tables");
        Assert.True(loaded.ExitCode == 0 && mapped.ExitCode == 0, loaded.Error + mapped.Error);
        Assert.Equal(loaded.Output, mapped.Output);

        var bench = PeerProcess.Run(_folder.Path, "bench", "--generation-only", "--generation", checkpoint);
        Assert.True(bench.ExitCode == 0, bench.Error);
        Assert.Matches(@"\| 32² \| [\d.]+ GB \| loaded \| [\d.]+ \| \d+ \|", bench.Output);
        Assert.Matches(@"\| 32² \| [\d.]+ GB \| mapped \| [\d.]+ \| \d+ \|", bench.Output);
        Assert.Contains("generation at N = 32², tables mapped: peak RSS ≤ 4 GB (issue 9)", bench.Output);
        Assert.False(File.Exists(Path.Combine(_folder.Path, "docs", "PERFORMANCE.md")), "--generation-only must not overwrite the full report");
    }
}
