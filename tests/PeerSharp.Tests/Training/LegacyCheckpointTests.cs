using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Model;
using PeerSharp.Training;

namespace PeerSharp.Tests.Training;

/// <summary>
/// A checkpoint written by PeerSharp before the redesign (Fixtures/legacy-tiny: `peer train --preset tiny --steps 10`
/// at commit a41577b): format 1 sidecar with the old config names ("sparseKind") and a model file that holds every
/// PEER table up to four times under TorchSharp's field names. It still loads, scores what it scored when it was
/// written, and resumes.
/// </summary>
public class LegacyCheckpointTests
{
    static string Fixture => Path.Combine(AppContext.BaseDirectory, "Fixtures", "legacy-tiny", "checkpoint.json");

    [Fact]
    public void LoadsAndScoresWhatItScoredWhenWritten()
    {
        var (model, info) = Checkpoint.LoadModel(Fixture);
        using var _ = model;
        Assert.Equal(10, info.Step);
        Assert.Equal(FeedForwardKind.Peer, info.Config.Model.FeedForward);   // written as "sparseKind": "peer"
        using var corpus = TokenCorpus.Open(BundledCorpus.ValidationPath, info.Config.Model.Tokenizer);
        var result = Evaluator.Evaluate(model, corpus, info.Config.Train.BatchSize, info.Config.Train.EvalTokens);
        Assert.Equal(info.ValidationLoss!.Value, result.Loss, 4);   // 4.7495 nats, the run's last validation
    }

    [Fact]
    public void ResumesWithItsOptimizerState()
    {
        using var folder = new TempFolder();
        foreach (var file in Directory.GetFiles(Path.GetDirectoryName(Fixture)!))
            File.Copy(file, Path.Combine(folder.Path, Path.GetFileName(file)));
        var checkpoint = Path.Combine(folder.Path, "checkpoint.json");
        var saved = Checkpoint.Read(checkpoint).Config;
        Assert.Equal(TableOptimizerState.Full, saved.Train.TableState);   // written before the setting: full moments
        using var run = TrainingRun.Open(new TrainingRunOptions { Config = saved with { Train = saved.Train with { Steps = 14 } }, ResumeFrom = checkpoint });
        Assert.Equal(10, run.StartStep);
        var result = run.Run();
        Assert.True(result.Completed);
        Assert.Equal(14, Checkpoint.Read(checkpoint).Step);   // saved in the new format, in the checkpoint's folder
    }

    [Fact]
    public void ARecordWithoutATableStateRanWithFullMomentsWhileAConfigFileTakesTheDefault()
    {
        RunConfig Read(Func<System.Text.Json.Nodes.JsonObject, System.Text.Json.Nodes.JsonObject> upgrade) =>
            System.Text.Json.JsonSerializer.Deserialize<RunConfig>(upgrade(System.Text.Json.Nodes.JsonNode.Parse("""{"model": {}, "train": {"steps": 5}}""")!.AsObject()), RunConfig.Json)!;
        Assert.Equal(TableOptimizerState.Full, Read(RunConfig.UpgradeRecord).Train.TableState);
        Assert.Equal(TableOptimizerState.RowWiseNoMomentum, Read(RunConfig.Upgrade).Train.TableState);
        // The same for PEER's balance term: a record ran without it, a config file gets today's default, the joint term.
        Assert.Equal(PeerSharp.Layers.RetrievalBalance.None, Read(RunConfig.UpgradeRecord).Model.PeerOptions.Balance);
        Assert.Equal(PeerSharp.Layers.RetrievalBalance.Joint, Read(RunConfig.Upgrade).Model.PeerOptions.Balance);
        Assert.Equal(PeerSharp.Layers.RetrievalBalance.None, Read(RunConfig.Upgrade).Model.PkmOptions.Balance);
    }
}
