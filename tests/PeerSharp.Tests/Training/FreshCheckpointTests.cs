using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Model;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class FreshCheckpointTests
{
    public static TheoryData<FeedForwardKind, ExpertTableStorage> Kinds => new()
    {
        { FeedForwardKind.Peer, ExpertTableStorage.Float32 },
        { FeedForwardKind.Peer, ExpertTableStorage.BFloat16 },
        { FeedForwardKind.Pkm, ExpertTableStorage.Float32 },
    };

    /// <summary>
    /// The tiny preset of <paramref name="kind"/> with 512² experts: at d_model 32 a table is 128 MB, two slices of
    /// the writer's 64 MB, so the test sees tables drawn in more than one slice.
    /// </summary>
    static RunConfig Config(FeedForwardKind kind, ExpertTableStorage storage = ExpertTableStorage.Float32)
    {
        var config = TinyRuns.Config(steps: 1);
        return config with
        {
            Model = config.Model with
            {
                FeedForward = kind,
                PeerOptions = config.Model.PeerOptions with { SubKeyCount = 512, TableStorage = storage },
                PkmOptions = config.Model.PkmOptions with { SubKeyCount = 512 },
            },
            Train = config.Train with { UpdateInBackward = storage == ExpertTableStorage.BFloat16 },
        };
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TablesWrittenSliceBySliceHaveAFreshLayersDistribution(FeedForwardKind kind, ExpertTableStorage storage)
    {
        using var folder = new TempFolder();
        var config = Config(kind, storage);
        var fractions = new List<double>();
        var sidecar = FreshCheckpoint.Write(config, folder.Path, new Reports(fractions));

        var (written, info) = Checkpoint.LoadModel(sidecar);   // checks the SHA-256 and every shape
        using var _ = written;
        var (fresh, optimizer) = TrainingSetup.Create(config);
        using var __ = fresh;
        using var ___ = optimizer;
        Assert.Equal(0, info.Step);
        Assert.Null(info.OptimizerFile);
        Assert.True(fractions.Count > 2 && fractions.Zip(fractions.Skip(1)).All(p => p.First <= p.Second), string.Join(", ", fractions));
        Assert.InRange(fractions[^1], 0.99, 1.0);
        var fileBytes = new FileInfo(Path.Combine(folder.Path, info.ModelFile!)).Length;
        Assert.InRange(fileBytes, config.Model.ParameterBytes(), config.Model.ParameterBytes() + 65536);   // the data, plus its header

        var tables = MappedTables.TableNames(written);
        Assert.NotEmpty(tables);
        var expected = fresh.state_dict();
        foreach (var (name, tensor) in written.state_dict())
        {
            Assert.Equal(expected[name].shape, tensor.shape);
            Assert.Equal(expected[name].dtype, tensor.dtype);
            if (!tables.Contains(name)) continue;
            // The distribution of a fresh layer's table: the same mean and spread...
            using var wide = tensor.to(ScalarType.Float32);
            using var freshWide = expected[name].to(ScalarType.Float32);
            double mean = wide.mean().item<float>(), std = wide.std().item<float>(), freshStd = freshWide.std().item<float>();
            Assert.InRange(std, 0.99 * freshStd, 1.01 * freshStd);
            Assert.InRange(mean, -0.01 * freshStd, 0.01 * freshStd);
            // ...and no slice a copy of another (the generator moves on between slices).
            var half = tensor.shape[0] / 2;
            Assert.False(tensor.narrow(0, 0, 4).equal(tensor.narrow(0, half, 4)).all().item<bool>(), $"{name}: slices repeat");
        }
    }

    [Fact]
    public void AModelLargerThanTheDiskIsRefusedBeforeWriting()
    {
        using var folder = new TempFolder();
        var config = Config(FeedForwardKind.Peer);
        config = config with { Model = config.Model with { ModelDim = 4096, PeerOptions = config.Model.PeerOptions with { SubKeyCount = 32768 } } };
        var error = Assert.Throws<PeerSharpException>(() => FreshCheckpoint.Write(config, folder.Path));
        Assert.Matches(@"^the model file needs [\d,.]+ GB but '.*' has [\d,.]+ GB free; expected a folder on a larger disk or a smaller model \(--experts, --d-model\)$", error.Message);
        Assert.Empty(Directory.EnumerateFiles(folder.Path));
    }

    sealed class Reports(List<double> into) : IProgress<double>
    {
        public void Report(double value) => into.Add(value);
    }
}
