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
        var weights = Path.Combine(Run("ok"), PeerSharp.Training.Checkpoint.Read(sidecar).ModelFile!);

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
        var weights = Path.Combine(Run("not-utf8"), PeerSharp.Training.Checkpoint.Read(sidecar).ModelFile!);
        var bytes = File.ReadAllBytes(weights);
        bytes[bytes.AsSpan().IndexOf("\"tok_emb"u8) + 1] = 0xFF;
        File.WriteAllBytes(weights, bytes);
        PeerSharp.Tests.Training.CheckpointEdits.Rehash(sidecar);
        AssertFailsWith("has a header that is not valid UTF-8", "eval", "--checkpoint", sidecar);
        AssertFailsWith("has a header that is not valid UTF-8", "eval", "--checkpoint", sidecar, "--map-tables");
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
    public void DiskFullDuringACheckpoint()
    {
        // A 200 kB disk: the run starts (config, metrics) but its checkpoint does not fit.
        var small = Run("small-disk");
        Directory.CreateDirectory(small);
        RootMountFactAttribute.Mount(small, "200k");
        try
        {
            AssertFailsWith("the disk is full", "train", "--preset", "tiny", "--steps", "2", "--sample-tokens", "0", "--out", Path.Combine(small, "run"));
            Assert.False(File.Exists(Path.Combine(small, "run", "checkpoint.json")), "a checkpoint that did not fit must not appear written");
        }
        finally
        {
            RootMountFactAttribute.Unmount(small);
        }
    }
}
