using System.Text.RegularExpressions;
using PeerSharp.Checkpoints;
using PeerSharp.Training;

namespace PeerSharp.Tests.Cli;

/// <summary>
/// A run folder's data is safe: resuming continues in the right folder, a signal stops training with a checkpoint,
/// and a training that fails or collides with another leaves the folder's run as it was.
/// </summary>
public class RunFolderTests : IDisposable
{
    readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    string Run(string name) => _folder.File(name);

    PeerProcess.Result Peer(params string[] args)
    {
        var result = PeerProcess.Run(_folder.Path, args);
        Assert.True(result.ExitCode == 0, $"peer {string.Join(' ', args)} failed:\n{result.Error}");
        return result;
    }

    static long[] TrainingSteps(string folder) =>
        [.. MetricsLog.Read(Path.Combine(folder, "metrics.jsonl")).Where(r => r.Loss is not null).Select(r => r.Step)];

    [Fact]
    public void ResumingWithoutOutContinuesInTheCheckpointsFolder()
    {
        var a = Run("A");
        Peer("train", "--preset", "tiny", "--out", a, "--sample-tokens", "0");
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), TrainingSteps(a));

        var resumed = Peer("train", "--resume", Path.Combine(a, "checkpoint"), "--steps", "60", "--sample-tokens", "0");

        Assert.Contains("at step 40", resumed.Output);
        Assert.Equal(Enumerable.Range(1, 60).Select(i => (long)i), TrainingSteps(a));
        Assert.Equal(60, Checkpoint.Read(Path.Combine(a, "checkpoint")).Step);
        Assert.False(Directory.Exists(Run("runs")), "resuming without --out must not start a run in runs/PRESET");
    }

    [Fact]
    public void AFolderHoldingARunIsOnlyReplacedWithForce()
    {
        var a = Run("A");
        var b = Run("B");
        Peer("train", "--preset", "tiny", "--steps", "3", "--out", a, "--sample-tokens", "0");
        Peer("train", "--preset", "tiny", "--steps", "2", "--out", b, "--sample-tokens", "0");
        var metrics = File.ReadAllBytes(Path.Combine(a, "metrics.jsonl"));

        PeerProcess.AssertFailsWith(_folder.Path, "already holds a run", "train", "--preset", "tiny", "--steps", "2", "--out", a);
        Assert.Equal(metrics, File.ReadAllBytes(Path.Combine(a, "metrics.jsonl")));

        // Resuming B's checkpoint into A would mix two runs' logs in A.
        PeerProcess.AssertFailsWith(_folder.Path, "already holds another run", "train", "--resume", Path.Combine(b, "checkpoint"), "--steps", "4", "--out", a);
        Assert.Equal(metrics, File.ReadAllBytes(Path.Combine(a, "metrics.jsonl")));

        // With --force, A holds B's run continued: B's two steps, then the new ones.
        Peer("train", "--resume", Path.Combine(b, "checkpoint"), "--steps", "4", "--out", a, "--force", "--sample-tokens", "0");
        Assert.Equal([1L, 2, 3, 4], TrainingSteps(a));
        Assert.Equal([1L, 2], TrainingSteps(b));

        Peer("train", "--preset", "tiny", "--steps", "2", "--out", a, "--force", "--sample-tokens", "0");
        Assert.Equal([1L, 2], TrainingSteps(a));
    }

    [Fact]
    public void SigtermStopsTrainingWithACheckpointToResumeFrom() => StopsWithACheckpointToResumeFrom(PeerProcess.SigTerm);

    [SignalNotIgnoredFact(PeerProcess.SigHup)]
    public void SighupStopsTrainingWithACheckpointToResumeFrom() => StopsWithACheckpointToResumeFrom(PeerProcess.SigHup);

    void StopsWithACheckpointToResumeFrom(int signal)
    {
        var a = Run("A");
        long step;
        using (var training = PeerProcess.Start(_folder.Path, "train", "--preset", "tiny", "--steps", "100000", "--out", a, "--sample-tokens", "0"))
        {
            WaitForFirstStep(training, a);
            training.Signal(signal);
            var stopped = training.WaitForExit();

            Assert.True(stopped.ExitCode == 130, $"exit code {stopped.ExitCode}:\n{stopped.Output}\n{stopped.Error}");
            var line = Regex.Match(stopped.Output, @"Stopped at step (\d+)");
            Assert.True(line.Success, stopped.Output);
            step = long.Parse(line.Groups[1].Value);
        }
        Assert.Equal(step, Checkpoint.Read(Path.Combine(a, "checkpoint")).Step);

        var resumed = Peer("train", "--resume", Path.Combine(a, "checkpoint"), "--steps", $"{step + 3}", "--sample-tokens", "0");
        Assert.Contains($"at step {step}", resumed.Output);
        Assert.Equal(step + 3, Checkpoint.Read(Path.Combine(a, "checkpoint")).Step);
    }

    [Fact]
    public void ATooShortValidationTextFailsBeforeTheFolderIsTouched()
    {
        var a = Run("A");
        Peer("train", "--preset", "tiny", "--steps", "2", "--out", a, "--sample-tokens", "0");
        var config = File.ReadAllBytes(Path.Combine(a, "config.json"));
        var metrics = File.ReadAllBytes(Path.Combine(a, "metrics.jsonl"));
        File.WriteAllText(Run("short.txt"), "ten bytes!");

        PeerProcess.AssertFailsWith(_folder.Path, "validation text has 10 tokens", "train", "--preset", "tiny", "--steps", "5", "--out", a, "--force", "--validation", Run("short.txt"));

        Assert.Equal(config, File.ReadAllBytes(Path.Combine(a, "config.json")));
        Assert.Equal(metrics, File.ReadAllBytes(Path.Combine(a, "metrics.jsonl")));
    }

    [Fact]
    public void ASecondTrainingInAFolderInUseIsRefusedNamingTheHolder()
    {
        var a = Run("A");
        using var first = PeerProcess.Start(_folder.Path, "train", "--preset", "tiny", "--steps", "100000", "--out", a, "--sample-tokens", "0");
        WaitForFirstStep(first, a);
        var config = File.ReadAllBytes(Path.Combine(a, "config.json"));

        PeerProcess.AssertFailsWith(_folder.Path, $"is in use by process {first.Id}", "train", "--preset", "tiny", "--steps", "2", "--lr", "0.001", "--out", a, "--force");

        Assert.Equal(config, File.ReadAllBytes(Path.Combine(a, "config.json")));
        Assert.False(first.HasExited, "the first training must go on");
        first.Signal(PeerProcess.SigTerm);
        Assert.Equal(130, first.WaitForExit().ExitCode);
    }

    /// <summary>Waits until a training started in the background has logged its first step (so it has locked its folder and handles signals).</summary>
    static void WaitForFirstStep(PeerProcess.Running training, string folder)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (TrainingSteps(folder).Length == 0)
        {
            if (training.HasExited)
            {
                var result = training.WaitForExit();
                Assert.Fail($"training ended (exit code {result.ExitCode}) before its first step:\n{result.Error}");
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("training logged no step in 2 minutes");
            Thread.Sleep(100);
        }
    }
}
