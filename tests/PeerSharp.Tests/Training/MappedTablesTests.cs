using System.Runtime.InteropServices;
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public unsafe partial class MappedTablesTests
{
    public static TheoryData<FeedForwardKind, ExpertTableStorage> Kinds => new()
    {
        { FeedForwardKind.Peer, ExpertTableStorage.Float32 },
        { FeedForwardKind.Peer, ExpertTableStorage.BFloat16 },
        { FeedForwardKind.Pkm, ExpertTableStorage.Float32 },
    };

    /// <summary>
    /// A tiny model of the given kind (PEER tables stored as <paramref name="storage"/>) trained two steps (so the tables
    /// differ from any initialisation), saved in <paramref name="folder"/>.
    /// </summary>
    static string TrainedCheckpoint(TempFolder folder, FeedForwardKind kind, ExpertTableStorage storage = ExpertTableStorage.Float32)
    {
        var config = TinyRuns.Config(steps: 2);
        config = config with
        {
            Model = config.Model with { FeedForward = kind, PeerOptions = config.Model.PeerOptions with { TableStorage = storage } },
            Train = config.Train with { UpdateInBackward = storage == ExpertTableStorage.BFloat16 },
        };
        using var corpus = TinyRuns.Train();
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        return new Trainer(config, model, optimizer, corpus, null, Path.Combine(folder.Path, "ckpt")).Run().CheckpointPath!;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void MappedTablesGiveTheSameLossAndTextAsLoadedOnes(FeedForwardKind kind, ExpertTableStorage storage)
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, kind, storage);
        using var validation = TinyRuns.Validation();
        var sampling = new SamplingOptions(40, 0.8, 10, 7);

        var (loaded, info) = Checkpoint.LoadModel(checkpoint);
        using var _ = loaded;
        var (mapped, _) = Checkpoint.LoadModel(checkpoint, mapTables: true);
        using var __ = mapped;

        foreach (var (name, tensor) in mapped.state_dict())
            Assert.True(tensor.equal(loaded.state_dict()[name]).all().item<bool>(), $"{name} differs");
        if (kind == FeedForwardKind.Peer)
            Assert.All(mapped.state_dict().Where(p => p.Key.EndsWith("ffn.down.weight")),
                       p => Assert.Equal(storage == ExpertTableStorage.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32, p.Value.dtype));
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
        var (mapped, info) = Checkpoint.LoadModel(checkpoint, mapTables: true);
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
        var error = Assert.Throws<PeerSharpException>(() => Checkpoint.LoadModel(checkpoint, mapTables: true));
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
        var error = Assert.Throws<PeerSharpException>(() => Checkpoint.LoadModel(checkpoint, mapTables: true));
        Assert.Contains(table.Groups[1].Value, error.Message);
    }

    [LinuxFact]
    public void DisposingTheModelUnmapsTheFile()
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, FeedForwardKind.Peer);
        var file = Path.Combine(folder.Path, Checkpoint.Read(checkpoint).ModelFile!);
        var (mapped, _) = Checkpoint.LoadModel(checkpoint, mapTables: true);
        Assert.Contains(file, File.ReadAllText("/proc/self/maps"));
        mapped.Dispose();
        Assert.DoesNotContain(file, File.ReadAllText("/proc/self/maps"));
    }

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int FileAdvise(int descriptor, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "mincore")]
    private static partial int PagesInCore(IntPtr address, nuint length, byte* residency);

    /// <summary>Whether the 4 KiB page that holds <paramref name="address"/> is in the page cache.</summary>
    static bool Resident(long address)
    {
        byte state;
        Assert.Equal(0, PagesInCore((IntPtr)(address & ~4095L), 4096, &state));
        return (state & 1) != 0;
    }

    [LinuxFact]
    public void TheRowsAForwardWillReadAreRequestedFromTheDiskAhead()
    {
        using var folder = new TempFolder();
        var checkpoint = TrainedCheckpoint(folder, FeedForwardKind.Peer);
        var (mapped, _) = Checkpoint.LoadModel(checkpoint, mapTables: true);
        using var __ = mapped;
        var peer = mapped.modules().OfType<Peer>().First();
        long start = (long)TensorMemory.Bytes(peer.Down).Start, rowBytes = peer.Down.shape[1] * sizeof(float);
        long lastRow = start + (peer.Down.shape[0] - 1) * rowBytes;
        Assert.NotEqual(start / 4096, lastRow / 4096);   // the first and last rows lie on different pages

        // Drop the file's pages from the page cache (they are clean: checkpoints are synced), so that only a read brings them back.
        using (var file = File.OpenHandle(Path.Combine(Path.GetDirectoryName(checkpoint)!, Checkpoint.Read(checkpoint).ModelFile!)))
            Assert.Equal(0, FileAdvise((int)file.DangerousGetHandle(), 0, 0, 4));   // POSIX_FADV_DONTNEED
        Assert.False(Resident(start), "the first row's page is still cached after POSIX_FADV_DONTNEED (a file system that cannot drop it, e.g. tmpfs?)");

        using var ids = tensor(new long[] { 0 });
        RowReadAhead.Request(ids, peer.Down);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!Resident(start) && waited.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(5);
        Assert.True(Resident(start), "the page of the requested row was not read within 5 s");
        Assert.False(Resident(lastRow), "a page no id asked for was read too");

        // A table in ordinary memory is left alone.
        using var ordinary = zeros(64, 32);
        RowReadAhead.Request(ids, ordinary);
    }
}
