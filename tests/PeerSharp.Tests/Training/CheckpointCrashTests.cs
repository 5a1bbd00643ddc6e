using System.Diagnostics;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>
/// A save stopped between any two of its file operations, by a crash or by a full disk, leaves the previous
/// checkpoint or the new one, whole, and the next save cleans up after it.
/// </summary>
public class CheckpointCrashTests
{
    static readonly RunConfig Config = TinyRuns.Config(steps: 3);

    /// <summary>What a checkpoint of one version must load as: its step, tokens seen, and every tensor.</summary>
    sealed record Version(long Step, long TokensSeen, Dictionary<string, Tensor> Model, Dictionary<string, Tensor> Optimizer);

    public enum Previous { None, Current, FirstFormat, SameStep }

    [Theory]
    [InlineData(Previous.Current, true)]
    [InlineData(Previous.Current, false)]
    [InlineData(Previous.FirstFormat, true)]
    [InlineData(Previous.FirstFormat, false)]
    [InlineData(Previous.SameStep, true)]
    [InlineData(Previous.SameStep, false)]
    [InlineData(Previous.None, true)]
    [InlineData(Previous.None, false)]
    public void ASaveStoppedAtAnyOperationLeavesTheOldOrTheNewCheckpoint(Previous previous, bool crash)
    {
        var (model, optimizer) = TrainingSetup.Create(Config);
        using var _ = model;
        using var __ = optimizer;
        var old = Snapshot(model, optimizer, previous == Previous.SameStep ? 2 : 1, tokensSeen: 100);
        Perturb(model, optimizer);
        var next = Snapshot(model, optimizer, 2, tokensSeen: 200);

        using var template = new TempFolder();
        Prepare(previous, template.File("ckpt"), old);

        // A dry run counts the operations of this save and finds the commit among them.
        var (operations, commit) = CountOperations(template, model, optimizer, next);
        Assert.InRange(commit, 3, operations - 2);

        for (var failAt = 0; failAt <= operations; failAt++)
        {
            using var folder = new TempFolder();
            var path = folder.File("ckpt");
            CopyFiles(template, folder);
            var before = Listing(folder.Path);
            var files = new FailingFiles(failAt, crash);
            var error = Record.Exception(() => Checkpoint.Save(path, model, optimizer, Info(next), files));

            var committed = failAt > commit;
            if (failAt == operations) Assert.Null(error);
            else if (crash) Assert.IsType<SimulatedCrash>(error);
            else if (failAt <= commit + 1)
            {
                // Before the commit, or the sync that makes it durable: the user hears of it in one line.
                var failure = Assert.IsType<PeerSharpException>(error);
                Assert.Equal($"could not write checkpoint '{path}.json': No space left on device", failure.Message);
            }
            else Assert.Null(error);   // deleting the previous checkpoint's files failed: they wait for the next save

            if (committed) AssertLoads(path, next);
            else if (previous == Previous.None) Assert.Contains("does not exist", Assert.Throws<PeerSharpException>(() => Checkpoint.Read(path)).Message);
            else AssertLoads(path, old);
            if (!crash && !committed) Assert.Equal(before, Listing(folder.Path));
            if (!crash) Assert.Empty(Directory.GetFiles(folder.Path, "*.tmp"));

            // The next save removes whatever the stopped one left behind.
            Checkpoint.Save(path, model, optimizer, new Checkpoint { Config = Config, Step = 3 }, FailingFiles.Never);
            var sidecar = Checkpoint.Read(path);
            Assert.Equal(3, sidecar.Step);
            Assert.Equal(new[] { "ckpt.json", sidecar.ModelFile!, sidecar.OptimizerFile! }.Order(), Listing(folder.Path));
        }
    }

    [Fact]
    public void AFolderThatCannotBeCreatedIsOneLineAndLeavesNothing()
    {
        using var folder = new TempFolder();
        var blocker = folder.Write("file", "not a folder");
        var (model, optimizer) = TrainingSetup.Create(Config);
        using var _ = model;
        using var __ = optimizer;
        var path = Path.Combine(blocker, "ckpt");
        var error = Assert.Throws<PeerSharpException>(() => Checkpoint.Save(path, model, optimizer, new Checkpoint { Config = Config, Step = 1 }));
        Assert.StartsWith($"could not write checkpoint '{path}.json': ", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Equal(["file"], Listing(folder.Path));
    }

    [Fact]
    public void TrainingKilledAtRandomMomentsAlwaysResumes()
    {
        using var folder = new TempFolder();
        var run = folder.File("run");
        var sidecar = Path.Combine(run, "checkpoint.json");
        var config = folder.Write("config.json", """{ "train": { "steps": 1000000, "checkpointInterval": 1, "evalInterval": 1000000 } }""");
        var random = new Random(20240611);
        long step = 0;
        for (var kill = 0; kill < 2; kill++)
        {
            var savedBefore = File.Exists(sidecar) ? File.GetLastWriteTimeUtc(sidecar) : DateTime.MinValue;
            var start = new ProcessStartInfo("dotnet") { WorkingDirectory = folder.Path, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in (string[])[Path.Combine(AppContext.BaseDirectory, "peer.dll"), "train", "--preset", "tiny", "--config", config, "--out", run, "--sample-tokens", "0", .. kill > 0 ? ["--resume"] : Array.Empty<string>()])
                start.ArgumentList.Add(arg);
            using var process = Process.Start(start)!;
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var clock = Stopwatch.StartNew();
            while (!File.Exists(sidecar) || File.GetLastWriteTimeUtc(sidecar) == savedBefore)
            {
                Assert.False(process.HasExited, "training stopped before it saved a checkpoint");
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(1), "no checkpoint within a minute");
                Thread.Sleep(10);
            }
            // Somewhere inside one of the saves that now follow each other.
            Thread.Sleep(random.Next(0, 400));
            process.Kill();
            process.WaitForExit();

            var (model, optimizer, info) = TrainingSetup.Resume(sidecar);
            model.Dispose();
            optimizer.Dispose();
            Assert.True(info.Step > step, $"checkpoint went from step {step} to {info.Step}");
            step = info.Step;
        }
    }

    static (int Operations, int Commit) CountOperations(TempFolder template, TransformerLM model, IOptimizer optimizer, Version next)
    {
        using var folder = new TempFolder();
        CopyFiles(template, folder);
        var counter = FailingFiles.Never;
        Checkpoint.Save(folder.File("ckpt"), model, optimizer, Info(next), counter);
        return (counter.Count, counter.ReplacedAt);
    }

    static void CopyFiles(TempFolder from, TempFolder to)
    {
        foreach (var file in Directory.GetFiles(from.Path)) File.Copy(file, to.File(Path.GetFileName(file)));
    }

    /// <summary>Puts the previous checkpoint, in the given form, at <paramref name="path"/>.</summary>
    static void Prepare(Previous previous, string path, Version old)
    {
        if (previous == Previous.None) return;
        var (model, optimizer) = TrainingSetup.Create(Config);
        using var _ = model;
        using var __ = optimizer;
        Restore(model, optimizer, old);
        if (previous == Previous.FirstFormat) CheckpointEdits.SaveInFirstFormat(path, model, optimizer, Info(old));
        else Checkpoint.Save(path, model, optimizer, Info(old), FailingFiles.Never);
    }

    static void AssertLoads(string path, Version expected)
    {
        var (model, optimizer) = TrainingSetup.Create(Config);
        using var _ = model;
        using var __ = optimizer;
        var info = Checkpoint.Load(path, model, optimizer);
        Assert.Equal(expected.TokensSeen, info.TokensSeen);
        Assert.Equal(expected.Step, info.Step);
        Assert.Equal(expected.Step, Checkpoint.Read(path).Step);
        CheckpointTests.AssertSameTensors(expected.Model, model.state_dict());
        CheckpointTests.AssertSameTensors(expected.Optimizer, optimizer.StateDict());
    }

    static Checkpoint Info(Version version) => new() { Config = Config, Step = version.Step, TokensSeen = version.TokensSeen };

    static Version Snapshot(TransformerLM model, IOptimizer optimizer, long step, long tokensSeen) =>
        new(step, tokensSeen, Clone(model.state_dict()), Clone(optimizer.StateDict()));

    static Dictionary<string, Tensor> Clone(IDictionary<string, Tensor> tensors) => tensors.ToDictionary(t => t.Key, t => t.Value.detach().clone());

    static void Restore(TransformerLM model, IOptimizer optimizer, Version version)
    {
        using var _ = no_grad();
        foreach (var (name, tensor) in model.state_dict()) tensor.copy_(version.Model[name]);
        optimizer.LoadStateDict(version.Optimizer);
    }

    /// <summary>Moves every weight and optimizer tensor, so two versions differ everywhere.</summary>
    static void Perturb(TransformerLM model, IOptimizer optimizer)
    {
        using var _ = no_grad();
        foreach (var parameter in model.parameters()) parameter.add_(1);
        foreach (var tensor in optimizer.StateDict().Values) tensor.add_(1);
    }

    static List<string> Listing(string folder) => [.. Directory.GetFiles(folder).Select(f => Path.GetFileName(f)).Order()];
}

/// <summary>Thrown by <see cref="FailingFiles"/> in place of the process dying.</summary>
sealed class SimulatedCrash : Exception;

/// <summary>
/// File operations that fail at operation number <c>failAt</c> (0-based). As a crash: that operation and every
/// later one throw <see cref="SimulatedCrash"/>, so nothing after it happens, clean-up included; a write that
/// crashes leaves half its bytes. As a full disk: that operation throws an IOException, later ones work.
/// They skip the fsyncs, which only matter if the machine goes down and would make these tests slow.
/// </summary>
sealed class FailingFiles(int failAt, bool crash) : CheckpointFiles
{
    /// <summary>Operations that never fail.</summary>
    public static FailingFiles Never => new(int.MaxValue, crash: false);

    bool _dead;

    /// <summary>Operations attempted.</summary>
    public int Count { get; private set; }

    /// <summary>The number of the last <see cref="Replace"/> attempted.</summary>
    public int ReplacedAt { get; private set; } = -1;

    bool FailsNow()
    {
        if (_dead) throw new SimulatedCrash();
        if (Count++ != failAt) return false;
        _dead = crash;
        return true;
    }

    Exception Failure() => crash ? new SimulatedCrash() : new IOException("No space left on device");

    public override void Write(string path, Action<Stream> write)
    {
        if (FailsNow())
        {
            using var whole = new MemoryStream();
            write(whole);
            File.WriteAllBytes(path, whole.ToArray()[..(int)(whole.Length / 2)]);
            throw Failure();
        }
        using var stream = new FileStream(path, FileMode.CreateNew);
        write(stream);
    }

    public override void SyncFolder(string folder)
    {
        if (FailsNow()) throw Failure();
    }

    public override void Replace(string source, string destination)
    {
        ReplacedAt = Count;
        if (FailsNow()) throw Failure();
        base.Replace(source, destination);
    }

    public override void Delete(string path)
    {
        if (FailsNow()) throw Failure();
        base.Delete(path);
    }
}
