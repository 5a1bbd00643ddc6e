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

    void AssertFailsWith(string expectedFragment, params string[] args)
    {
        var result = PeerProcess.Run(_folder.Path, args);
        Assert.NotEqual(0, result.ExitCode);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{result.Error}");
        Assert.StartsWith("peer: ", lines[0]);
        Assert.Contains(expectedFragment, lines[0]);
        Assert.DoesNotContain("   at ", result.Error + result.Output);
        Assert.Empty(Directory.GetFiles(_folder.Path, "*.tmp", SearchOption.AllDirectories));
    }

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

    [Fact]
    public void BadCheckpoints()
    {
        var trained = PeerProcess.Run(_folder.Path, "train", "--preset", "tiny", "--steps", "2", "--out", Run("ok"), "--sample-tokens", "0");
        Assert.True(trained.ExitCode == 0, trained.Error);
        var sidecar = Path.Combine(Run("ok"), "checkpoint.json");
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
}
