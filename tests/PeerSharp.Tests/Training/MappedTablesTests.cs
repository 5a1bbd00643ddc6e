using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Model;
using PeerSharp.Training;

namespace PeerSharp.Tests.Training;

public class MappedTablesTests
{
    public static TheoryData<FeedForwardKind> Kinds => [FeedForwardKind.Peer, FeedForwardKind.Pkm];

    /// <summary>A tiny model of the given kind trained two steps (so the tables differ from any initialisation), saved in <paramref name="folder"/>.</summary>
    static string TrainedCheckpoint(TempFolder folder, FeedForwardKind kind)
    {
        var config = TinyRuns.Config(steps: 2);
        config = config with { Model = config.Model with { FeedForward = kind } };
        using var corpus = TinyRuns.Train();
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        return new Trainer(config, model, optimizer, corpus, null, Path.Combine(folder.Path, "ckpt")).Run().CheckpointPath!;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void MappedTablesGiveTheSameLossAndTextAsLoadedOnes(FeedForwardKind kind)
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, kind);
        using var validation = TinyRuns.Validation();
        var sampling = new SamplingOptions(40, 0.8, 10, 7);

        var (loaded, info) = TrainingSetup.LoadModel(checkpoint);
        using var _ = loaded;
        var (mapped, _) = TrainingSetup.LoadModel(checkpoint, mapTables: true);
        using var __ = mapped;

        foreach (var (name, tensor) in mapped.state_dict())
            Assert.True(tensor.equal(loaded.state_dict()[name]).all().item<bool>(), $"{name} differs");
        var expected = Evaluator.Evaluate(loaded, validation, 4, 1024);
        var actual = Evaluator.Evaluate(mapped, validation, 4, 1024);
        Assert.Equal(expected.Loss, actual.Loss);
        Assert.Equal(expected.Tokens, actual.Tokens);
        var tokenizer = Tokenizers.Create(info.Config.Model.Tokenizer);
        Assert.Equal(TextGenerator.Generate(loaded, tokenizer, "The ", sampling), TextGenerator.Generate(mapped, tokenizer, "The ", sampling));
    }

    [Fact]
    public void AMappedModelRefusesTraining()
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, FeedForwardKind.Peer);
        var (mapped, info) = TrainingSetup.LoadModel(checkpoint, mapTables: true);
        using var _ = mapped;
        var error = Assert.Throws<PeerSharpException>(() => OptimizerFactory.Create(mapped, info.Config.Train));
        Assert.Matches(@"^expert table 'blocks\.\d+\.ffn\.down\.weight' is memory-mapped read-only from a checkpoint; load the checkpoint without mapping its tables to train it$", error.Message);
    }

    [Fact]
    public void ATruncatedModelFileIsAClearError()
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, FeedForwardKind.Peer);
        var file = Path.Combine(folder.Path, Checkpoint.Read(checkpoint).ModelFile!);
        using (var stream = new FileStream(file, FileMode.Open)) stream.SetLength(stream.Length - 100);
        var error = Assert.Throws<PeerSharpException>(() => TrainingSetup.LoadModel(checkpoint, mapTables: true));
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void ACorruptHeaderIsAClearError()
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, FeedForwardKind.Peer);
        var file = Path.Combine(folder.Path, Checkpoint.Read(checkpoint).ModelFile!);
        var bytes = File.ReadAllBytes(file);
        var header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)BitConverter.ToUInt64(bytes, 0));
        var table = System.Text.RegularExpressions.Regex.Match(header, @"""(blocks\.\d+\.ffn\.down\.weight)"":\{""dtype"":""F32"",""shape"":\[64,32\]");
        Assert.True(table.Success, header);
        var shape = table.Index + table.Length - "64,32]".Length;
        bytes[8 + shape] = (byte)'9';   // [94, 32]: more rows than its bytes hold
        File.WriteAllBytes(file, bytes);
        var error = Assert.Throws<PeerSharpException>(() => TrainingSetup.LoadModel(checkpoint, mapTables: true));
        Assert.Contains(table.Groups[1].Value, error.Message);
    }

    [LinuxFact]
    public void DisposingTheModelUnmapsTheFile()
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, FeedForwardKind.Peer);
        var file = Path.Combine(folder.Path, Checkpoint.Read(checkpoint).ModelFile!);
        var (mapped, _) = TrainingSetup.LoadModel(checkpoint, mapTables: true);
        Assert.Contains(file, File.ReadAllText("/proc/self/maps"));
        mapped.Dispose();
        Assert.DoesNotContain(file, File.ReadAllText("/proc/self/maps"));
    }
}
