using System.Globalization;
using System.Text.RegularExpressions;
using PeerSharp.Config;
using PeerSharp.Tests.Cli;

namespace PeerSharp.Tests.Baselines;

/// <summary>A tiny model of every feed-forward kind trains through `peer train`: its validation loss falls.</summary>
public class BaselineTrainingTests
{
    [Theory]
    [InlineData("dense")]
    [InlineData("moe", "--routing", "expert-choice")]
    [InlineData("moe", "--routing", "token-choice", "--capacity", "1.25")]
    [InlineData("pkm")]
    [InlineData("peer")]
    public void ValidationLossFalls(string kind, params string[] options)
    {
        using var folder = new TempFolder();
        var run = PeerProcess.Run(folder.Path, ["train", "--preset", "tiny", "--ffn", kind, .. options, "--steps", "20", "--eval-interval", "10",
            "--eval-tokens", "1024", "--sample-tokens", "0", "--out", folder.File("run")]);
        Assert.True(run.ExitCode == 0, $"peer train failed: {run.Error}");
        var config = RunConfig.Load(folder.File("run/config.json"), Presets.Get("default"));
        Assert.Equal([kind, "dense"], config.Model.FeedForwardKinds().Select(EnumNames.Name));
        var losses = Regex.Matches(run.Output, @"validation loss (\d+\.\d+)").Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(2, losses.Count);
        // A fresh model predicts about uniformly over 256 bytes: loss ln 256 ≈ 5.55.
        Assert.True(losses[0] < Math.Log(256) && losses[1] < losses[0], $"validation loss after 10 and 20 steps: {losses[0]}, {losses[1]}");
    }
}
