using System.IO.Compression;
using PeerSharp.Checkpoints;
using PeerSharp.Tests.Training;
using Checkpoint = PeerSharp.Checkpoints.Checkpoint;

namespace PeerSharp.Tests.Cli;

/// <summary>
/// Every bad input ends with one line naming the problem, a non-zero exit code, no stack trace and no
/// half-written file.
/// </summary>
public class BadInputTests : IDisposable
{
    readonly TempFolder _folder = new();
    string Run(string name) => Path.Combine(_folder.Path, name);

    public void Dispose() => _folder.Dispose();

    void AssertFailsWith(string expectedFragment, params string[] args) => PeerProcess.AssertFailsWith(_folder.Path, expectedFragment, args);

    void AssertTrainFailsWithoutOutput(string expectedFragment, params string[] extra)
    {
        AssertFailsWith(expectedFragment, ["train", "--preset", "tiny", "--out", Run("failed"), .. extra]);
        Assert.False(Directory.Exists(Run("failed")), "a failed run must not leave a run folder behind");
    }

    [Fact]
    public void MissingDataFile() => AssertTrainFailsWithoutOutput("does-not-exist.txt", "--data", Run("does-not-exist.txt"));

    [Fact]
    public void EmptyDataFile()
    {
        File.WriteAllText(Run("empty.txt"), "");
        AssertTrainFailsWithoutOutput("empty.txt", "--data", Run("empty.txt"));
    }

    [Fact]
    public void UndecodableBytes()
    {
        File.WriteAllBytes(Run("latin1.txt"), [(byte)'c', (byte)'a', (byte)'f', 0xE9, (byte)' ', 0xFF, 0xFE]);
        AssertTrainFailsWithoutOutput("latin1.txt", "--data", Run("latin1.txt"));
    }

    [Fact]
    public void ImpossibleSettings()
    {
        AssertTrainFailsWithoutOutput("not a perfect square", "--experts", "1000");
        AssertTrainFailsWithoutOutput("top-k 9", "--experts", "64", "--topk", "9");
        AssertTrainFailsWithoutOutput("key dim 7", "--key-dim", "7");
        AssertTrainFailsWithoutOutput("setting 'model.peer.topK' is not PATH=VALUE", "--set", "model.peer.topK");
        AssertTrainFailsWithoutOutput("--set is not a valid PeerSharp config", "--set", "model.peer.topKay=3");
        AssertFailsWith("unknown preset 'huge'", "train", "--preset", "huge", "--out", Run("failed"));
    }

    [Fact]
    public void DivergingRunStopsBeforeTheBadUpdate()
    {
        AssertFailsWith("training diverged", "train", "--preset", "tiny", "--lr", "1e30", "--steps", "5", "--out", Run("diverged"));
        Assert.False(File.Exists(Path.Combine(Run("diverged"), "checkpoint.json")));
    }

    /// <summary>Trains the tiny preset for two steps into run folder <paramref name="name"/> and returns its sidecar.</summary>
    string Trained(string name, params string[] extra)
    {
        var trained = PeerProcess.Run(_folder.Path, ["train", "--preset", "tiny", "--steps", "2", "--out", Run(name), "--sample-tokens", "0", .. extra]);
        Assert.True(trained.ExitCode == 0, trained.Error);
        return Path.Combine(Run(name), "checkpoint.json");
    }

    [Fact]
    public void BadCheckpoints()
    {
        var sidecar = Trained("ok");
        var weights = Path.Combine(Run("ok"), Checkpoint.Read(sidecar).ModelFile!);

        // A checkpoint written for another model shape cannot be resumed with a different one.
        AssertFailsWith("different model", "train", "--resume", sidecar, "--d-model", "64", "--out", Run("ok"));

        // Missing.
        AssertFailsWith("does not exist", "eval", "--checkpoint", Run("nothing.json"));

        // Corrupt: one flipped byte in the weights.
        var bytes = File.ReadAllBytes(weights);
        bytes[^10] ^= 0x55;
        File.WriteAllBytes(weights, bytes);
        AssertFailsWith("corrupt", "eval", "--checkpoint", sidecar);

        // Truncated weights, then a truncated sidecar.
        File.WriteAllBytes(weights, bytes[..(bytes.Length / 2)]);
        AssertFailsWith("corrupt or truncated", "generate", "--checkpoint", sidecar);
        var json = File.ReadAllText(sidecar);
        File.WriteAllText(sidecar, json[..(json.Length / 2)]);
        AssertFailsWith("corrupt or truncated", "eval", "--checkpoint", sidecar);
    }

    [Fact]
    public void TensorNameThatIsNotUtf8()
    {
        // One byte of a tensor name in the model file's header made 0xFF, the hash made to match again.
        var sidecar = Trained("not-utf8");
        var weights = Path.Combine(Run("not-utf8"), Checkpoint.Read(sidecar).ModelFile!);
        var bytes = File.ReadAllBytes(weights);
        bytes[bytes.AsSpan().IndexOf("\"tok_emb"u8) + 1] = 0xFF;
        File.WriteAllBytes(weights, bytes);
        CheckpointEdits.Rehash(sidecar);
        AssertFailsWith("has a header that is not valid UTF-8", "eval", "--checkpoint", sidecar);
        AssertFailsWith("has a header that is not valid UTF-8", "eval", "--checkpoint", sidecar, "--map-tables");
    }

    [Fact]
    public void RunFolderDeletedWhileTraining()
    {
        using var training = PeerProcess.Start(_folder.Path, "train", "--preset", "tiny", "--steps", "100000", "--out", Run("deleted"), "--sample-tokens", "0");
        var metrics = Path.Combine(Run("deleted"), "metrics.jsonl");
        WaitFor(() => File.Exists(metrics) && new FileInfo(metrics).Length > 0, training);
        for (var attempt = 0; Directory.Exists(Run("deleted")); attempt++)
        {
            try { Directory.Delete(Run("deleted"), recursive: true); }
            catch (IOException) when (attempt < 10) { }   // a file appeared while the folder was emptied
        }
        PeerProcess.AssertFailed(training.WaitForExit(), _folder.Path, $"run folder '{Run("deleted")}' was deleted while training");
        Assert.False(Directory.Exists(Run("deleted")), "a run whose folder was deleted must not make it again (holding only a checkpoint)");
    }

    /// <summary>Waits (a minute at most) until <paramref name="condition"/> holds while <paramref name="running"/> runs.</summary>
    static void WaitFor(Func<bool> condition, PeerProcess.Running running)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.False(running.HasExited, "peer ended before the test could act");
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(1), "peer did not get there in a minute");
            Thread.Sleep(50);
        }
    }

    [LinuxFact]
    public void TokenCachesThatCannotBeWritten()
    {
        File.WriteAllText(Run("cache-file"), "not a folder");
        var readOnly = "/proc";   // takes no folder, even for root, whom a read-only mode does not stop
        if (Environment.UserName != "root" && OperatingSystem.IsLinux())
        {
            readOnly = Run("read-only-cache");
            Directory.CreateDirectory(readOnly);
            File.SetUnixFileMode(readOnly, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        }
        foreach (var cache in new[] { Run("cache-file"), "/proc/self", readOnly })
        {
            PeerProcess.AssertFailsWith(_folder.Path, PeerProcess.Variables.Cache(cache), $"cannot write the token cache in '{Path.Combine(cache, "tokens")}'",
                                        "train", "--preset", "tiny", "--out", Run("failed"));
            Assert.False(Directory.Exists(Run("failed")), "a failed run must not leave a run folder behind");
        }
    }

    [RootMountFact]
    public void DiskFullWhileTokenizing() => OnASmallDisk("small-cache", small =>
    {
        // The bundled books' tokens (8 MB) do not fit a 200 kB cache disk; no checkpoint exists yet to resume from.
        var result = PeerProcess.AssertFailsWith(_folder.Path, PeerProcess.Variables.Cache(small), "the disk is full",
                                                 "train", "--preset", "tiny", "--out", Run("failed"));
        Assert.Contains("run the command again", result.Error);
        Assert.DoesNotContain("--resume", result.Error);
        Assert.False(Directory.Exists(Run("failed")));
    });

    /// <summary>Runs <paramref name="test"/> on folder <paramref name="name"/>, a 200 kB disk of its own.</summary>
    void OnASmallDisk(string name, Action<string> test)
    {
        var small = Run(name);
        Directory.CreateDirectory(small);
        RootMountFactAttribute.Mount(small, "200k");
        try
        {
            test(small);
        }
        finally
        {
            RootMountFactAttribute.Unmount(small);
        }
    }

    [Fact]
    public void JsonLineLongerThanTheLimit()
    {
        // A line of 65 MiB that gzip makes 65 kB: refused before more than the limit (64 MiB) of it is held.
        var path = Run("one-long-line.jsonl.gz");
        using (var gzip = new GZipStream(File.Create(path), CompressionLevel.SmallestSize))
        {
            gzip.Write("{\"text\": \""u8);
            var letters = new byte[1 << 20];
            Array.Fill(letters, (byte)'a');
            for (var mebibyte = 0; mebibyte <= PeerSharp.Data.TextSource.MaxJsonLineBytes >> 20; mebibyte++) gzip.Write(letters);
            gzip.Write("\"}\n"u8);
        }
        PeerProcess.AssertFailsWith(_folder.Path, PeerProcess.Variables.Cache(Run("cache")), $"line 1 of {path} is longer than 67,108,864 bytes",
                                    "train", "--preset", "tiny", "--steps", "1", "--sample-tokens", "0", "--data", path, "--out", Run("failed"));
        Assert.False(Directory.Exists(Run("failed")));
    }

    [LinuxFact]
    public void DataThatIsAPipe()
    {
        // A FIFO no one writes to: opening it would wait for ever.
        var fifo = Run("fifo.txt");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) mkfifo.WaitForExit();
        AssertTrainFailsWithoutOutput($"text source '{fifo}' is not a regular file", "--data", fifo);
        AssertTrainFailsWithoutOutput($"text source '{fifo}' is not a regular file", "--validation", fifo);
        Directory.CreateDirectory(Run("books"));
        File.WriteAllText(Path.Combine(Run("books"), "a.txt"), "A book.");
        File.Move(fifo, Path.Combine(Run("books"), "b.txt"));
        AssertTrainFailsWithoutOutput("b.txt' is not a regular file", "--data", Run("books"));
    }

    [Fact]
    public void RunAndArmNamesThatLeaveTheirFolder()
    {
        // Spec names were checked; the names of runs and arms, which name run folders too, were not.
        foreach (var name in new[] { "../../x", Run("absolute"), "..", "a\\b" })
        {
            File.WriteAllText(Run("sweep.json"), $$"""{ "name": "evil", "preset": "tiny", "budgets": [1e9], "runs": [ { "name": "{{name}}", "method": "peer" } ] }""");
            AssertFailsWith("run name", "sweep", Run("sweep.json"), "--plan");
            AssertFailsWith("must be a plain file name", "sweep", Run("sweep.json"), "--runs", Run("runs"));
        }
        var arm = Run("absolute-arm");
        File.WriteAllText(Run("lifelong.json"), $$"""
            { "name": "evil", "preset": "tiny", "phase1Steps": 2, "phase2Steps": 2, "evalInterval": 1,
              "phase1": [ { "name": "peer", "method": "peer" } ], "arms": [ { "name": "{{arm}}", "from": "peer" } ] }
            """);
        AssertFailsWith($"arm name '{arm}' must be a plain file name", "lifelong", Run("lifelong.json"), "--runs", Run("runs"), "--report", Run("report.md"));
        Assert.False(Directory.Exists(Run("runs")), "nothing may be trained for a spec that is refused");
        Assert.Empty(Directory.GetDirectories(_folder.Path, "absolute*"));
    }

    [Fact]
    public void GenerationBenchmarksOfCheckpointsThatAreNotThere()
    {
        AssertFailsWith($"checkpoint '{Run("nope.json")}' of --generation does not exist", "bench", "--generation-only", "--generation", $"{Run("nope.json")},/etc/passwd");
        // A file that is there but no checkpoint fails in the benchmark's own process: the command fails with it.
        File.WriteAllText(Run("not-a-checkpoint.json"), "{}");
        var result = PeerProcess.Run(_folder.Path, "bench", "--generation-only", "--generation", Run("not-a-checkpoint.json"));
        Assert.NotEqual(0, result.ExitCode);
        Assert.EndsWith("peer: 2 of 2 benchmarks failed (their errors are above); the report leaves them out", result.Error.TrimEnd());
    }

    [Fact]
    public void FlopBudgetsBeyondAnyRun()
    {
        AssertFailsWith("FLOP budget 1e+300 buys more than 2,147,483,647 steps, the most a run can take", "flops", "--preset", "tiny", "--budget", "1e300");
        AssertFailsWith("buys more than 2,147,483,647 steps", "flops", "--preset", "tiny", "--budget", "Infinity");
    }

    [Fact]
    public void EvaluationWhileATrainingSavesEveryStep()
    {
        // peer eval used to lose the race with the deletion of the previous step's files every time.
        File.WriteAllText(Run("every-step.json"), """{ "train": { "checkpointInterval": 1, "evalInterval": 100000 } }""");
        using var training = PeerProcess.Start(_folder.Path, "train", "--preset", "tiny", "--config", Run("every-step.json"), "--steps", "100000", "--out", Run("saving"), "--sample-tokens", "0");
        var sidecar = Path.Combine(Run("saving"), "checkpoint.json");
        WaitFor(() => File.Exists(sidecar), training);
        for (var i = 0; i < 3; i++)
        {
            var evaluated = PeerProcess.Run(_folder.Path, "eval", "--checkpoint", sidecar, "--tokens", "2048");
            Assert.True(evaluated.ExitCode == 0, evaluated.Error);
        }
        Assert.False(training.HasExited, "the training must still have been saving");
    }

    [Fact]
    public void SidecarStepThatIsNotItsFiles()
    {
        var sidecar = Trained("edited-step");
        CheckpointEdits.Edit(sidecar, json => json["step"] = 1L << 62);
        AssertFailsWith("has step 4611686018427387904, but its file 'checkpoint.step-000002.safetensors' was not written at that step", "eval", "--checkpoint", sidecar);
        AssertFailsWith("has step 4611686018427387904, but its file", "train", "--resume", sidecar, "--steps", "4");

        // A true step at or past the steps asked for trains nothing: said so, not "Done" with no checkpoint.
        CheckpointEdits.Edit(sidecar, json => json["step"] = 2);
        AssertFailsWith("is at step 2, which already reaches the 2 steps to train; expected more steps (--steps above 2)", "train", "--resume", sidecar);
        AssertFailsWith("is at step 2, which already reaches the 1 steps to train", "train", "--resume", sidecar, "--steps", "1");
    }

    [Fact]
    public void RunFolderThatIsAFile()
    {
        File.WriteAllText(Run("a-file"), "not a folder");
        AssertFailsWith("is a file", "train", "--preset", "tiny", "--out", Run("a-file"));
    }

    [LinuxFact]
    public void RunFoldersThatCannotBeWritten()
    {
        // /proc takes no new folders or files, even for root, whom a read-only mode does not stop.
        AssertFailsWith("cannot create run folder '/proc/peer-test'", "train", "--preset", "tiny", "--out", "/proc/peer-test");
        var readOnly = "/proc";
        if (Environment.UserName != "root" && OperatingSystem.IsLinux())
        {
            readOnly = Run("read-only");
            Directory.CreateDirectory(readOnly);
            File.SetUnixFileMode(readOnly, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        }
        try
        {
            AssertFailsWith($"cannot write to run folder '{readOnly}'", "train", "--preset", "tiny", "--steps", "2", "--out", readOnly);
        }
        finally
        {
            if (readOnly != "/proc" && OperatingSystem.IsLinux()) File.SetUnixFileMode(readOnly, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void NonFiniteAndOutOfRangeTrainingSettings()
    {
        AssertTrainFailsWithoutOutput("learning rate", "--lr", "Infinity");
        AssertTrainFailsWithoutOutput("learning rate NaN", "--lr", "NaN");
        AssertTrainFailsWithoutOutput("batch size 100000000", "--batch-size", "100000000");
        AssertTrainFailsWithoutOutput("tokens per step", "--batch-size", "1000000");
        AssertTrainFailsWithoutOutput("eval tokens 16", "--eval-tokens", "16");
        AssertTrainFailsWithoutOutput("tokens to generate -1", "--sample-tokens", "-1");
    }

    [Fact]
    public void UpdateInBackwardWithoutAFusedPeerBlock()
    {
        AssertTrainFailsWithoutOutput("updateInBackward needs a PEER block on the fused kernel", "--ffn", "dense", "--update-in-backward");
    }

    [Fact]
    public void BadConfigFiles()
    {
        void AssertConfigFails(string expected, string json)
        {
            File.WriteAllText(Run("run.json"), json);
            AssertTrainFailsWithoutOutput(expected, "--config", Run("run.json"));
        }
        AssertConfigFails("log interval 0", """{ "train": { "logInterval": 0 } }""");
        AssertConfigFails("sets \"model\" to null", """{ "model": null }""");
        AssertConfigFails("sets \"train\" to null", """{ "train": null }""");
        AssertConfigFails("sets \"model.moe\" to null", """{ "model": { "moe": null } }""");
        AssertConfigFails("vocabulary size 10", """{ "model": { "vocabSize": 10 } }""");
        AssertConfigFails("feed-forward multiplier 0", """{ "model": { "feedForwardMultiplier": 0 } }""");
    }

    [Fact]
    public void ModelsTooLargeForTheMachine()
    {
        AssertTrainFailsWithoutOutput("GB", "--d-model", "65536", "--layers", "1024");
        AssertFailsWith("GB", "info", "--d-model", "65536", "--layers", "1024");
    }

    [Fact]
    public void UnknownNamesOfKinds()
    {
        AssertTrainFailsWithoutOutput("ffn 'foo' is not known", "--ffn", "foo");
        AssertTrainFailsWithoutOutput("positions 'alibi' is not known", "--positions", "alibi");
        AssertTrainFailsWithoutOutput("routing 'x' is not known", "--routing", "x");
        AssertTrainFailsWithoutOutput("tokenizer 'bpe' is not known", "--tokenizer", "bpe");
        AssertTrainFailsWithoutOutput("table-state 'half' is not known", "--table-state", "half");
    }

    [Fact]
    public void CommandLinesThatDoNotParse()
    {
        AssertTrainFailsWithoutOutput("--steps 'abc' is not a whole number", "--steps", "abc");
        AssertTrainFailsWithoutOutput("--lr 'fast' is not a number", "--lr", "fast");
        AssertTrainFailsWithoutOutput("unrecognized command or argument '--bogus' (usage: peer train --help)", "--bogus");
        AssertFailsWith("option '--checkpoint' is required", "eval");
        AssertFailsWith("unrecognized command or argument 'frobnicate'", "frobnicate");
    }

    [Fact]
    public void BadSamplingSettings()
    {
        // Checked before the checkpoint loads: NaN or 1e-40 used to reach libtorch's sampler and abort the process.
        var checkpoint = Run("no-checkpoint.json");
        AssertFailsWith("temperature NaN", "generate", "--checkpoint", checkpoint, "--temperature", "NaN");
        AssertFailsWith("temperature 1E-40", "generate", "--checkpoint", checkpoint, "--temperature", "1e-40");
        AssertFailsWith("must be 0 (greedy) or a finite number", "generate", "--checkpoint", checkpoint, "--temperature", "Infinity");
        AssertFailsWith("tokens to generate -1", "generate", "--checkpoint", checkpoint, "--tokens", "-1");
        AssertFailsWith("top-k -1", "generate", "--checkpoint", checkpoint, "--top-k", "-1");
    }

    [Fact]
    public void TruncatedGzipData()
    {
        var whole = File.ReadAllBytes(PeerSharp.Data.BundledCorpus.ValidationPath);
        File.WriteAllBytes(Run("half.txt.gz"), whole[..(whole.Length / 2)]);
        AssertTrainFailsWithoutOutput("half.txt.gz is truncated", "--data", Run("half.txt.gz"));
    }

    [Fact]
    public void MachineLimitsAreOneLine()
    {
        var outOfMemory = new System.Runtime.InteropServices.ExternalException(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::ThrowEnforceNotMet(...)");
        Assert.Equal("libtorch: DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory); expected a smaller model, batch or context",
                     PeerSharp.Cli.UserErrors.Describe(outOfMemory));
        Assert.StartsWith("the disk is full (No space left on device", PeerSharp.Cli.UserErrors.Describe(new IOException("No space left on device : '/x'", 28)));
        Assert.Null(PeerSharp.Cli.UserErrors.Describe(new InvalidOperationException("a bug")));
        Assert.Null(PeerSharp.Cli.UserErrors.Describe(new System.Runtime.InteropServices.ExternalException("shape '[2, 3]' is invalid for input of size 5")));
    }

    [RootMountFact]
    public void DiskFullDuringACheckpoint() => OnASmallDisk("small-disk", small =>
    {
        // A 200 kB disk: the run starts (config, metrics) but its checkpoint does not fit.
        AssertFailsWith("the disk is full", "train", "--preset", "tiny", "--steps", "2", "--sample-tokens", "0", "--out", Path.Combine(small, "run"));
        Assert.False(File.Exists(Path.Combine(small, "run", "checkpoint.json")), "a checkpoint that did not fit must not appear written");
    });
}
