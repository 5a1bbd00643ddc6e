using System.Diagnostics;
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Kernels;
using PeerSharp.Layers;

namespace PeerSharp.Benchmarks;

/// <summary>Text generation from one checkpoint, its expert tables mapped from the file or loaded.</summary>
public sealed record GenerationCase
{
    /// <summary>The checkpoint (its .json sidecar).</summary>
    public required string Checkpoint { get; init; }

    /// <summary>Whether the expert tables are memory-mapped from the model file (docs/MEMORY_MAPPED.md) or read into memory.</summary>
    public bool MapTables { get; init; } = true;

    /// <summary>Tokens to generate (timed).</summary>
    public int Tokens { get; init; } = 300;

    /// <summary>Threads of libtorch and of the C# kernels.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>Speed and memory of one generation.</summary>
public sealed record GenerationResult
{
    /// <summary>What was measured.</summary>
    public required GenerationCase Case { get; init; }

    /// <summary>N of each PEER or PKM layer of the model.</summary>
    public long[] ExpertCounts { get; init; } = [];

    /// <summary>How the PEER tables are stored (float32 when the model has none).</summary>
    public ExpertTableStorage TableStorage { get; init; }

    /// <summary>Size of the model file, bytes.</summary>
    public long FileBytes { get; init; }

    /// <summary>Seconds to open the checkpoint and build the model.</summary>
    public double LoadSeconds { get; init; }

    /// <summary>Generated tokens per second, loading excluded.</summary>
    public double TokensPerSecond { get; init; }

    /// <summary>Peak resident memory of the process, bytes.</summary>
    public long PeakResidentBytes { get; init; }

    /// <summary>Resident memory at the end that is the process's own (anonymous), bytes.</summary>
    public long AnonymousBytes { get; init; }

    /// <summary>Resident memory at the end that is pages of mapped files (the tables' rows, clean page cache), bytes.</summary>
    public long FileBackedBytes { get; init; }
}

/// <summary>
/// Times `peer generate` on a checkpoint: PEER's cost per token should barely depend on N, and with mapped tables
/// resident memory should hold only the rows tokens read, whatever the file's size (issue targets in docs/PERFORMANCE.md).
/// </summary>
public static class GenerationBenchmark
{
    /// <summary>Runs one generation.</summary>
    public static GenerationResult Run(GenerationCase c)
    {
        TorchSharp.torch.set_num_threads(c.Threads);
        var clock = Stopwatch.StartNew();
        var (model, info) = Checkpoint.LoadModel(c.Checkpoint, c.MapTables);
        using var _ = model;
        var loadSeconds = clock.Elapsed.TotalSeconds;
        var tokenizer = Tokenizers.Create(info.Config.Model.Tokenizer);
        clock.Restart();
        TextGenerator.Generate(model, tokenizer, "The ", new SamplingOptions(c.Tokens, Seed: 1));
        var seconds = clock.Elapsed.TotalSeconds;
        return new GenerationResult
        {
            Case = c,
            ExpertCounts = [.. model.modules().OfType<IExpertRetrieval>().Select(l => l.ExpertCount)],
            TableStorage = info.Config.Model.PeerOptions.TableStorage,
            FileBytes = new FileInfo(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(Checkpoint.SidecarPath(c.Checkpoint)))!, info.ModelFile!)).Length,
            LoadSeconds = loadSeconds,
            TokensPerSecond = c.Tokens / seconds,
            PeakResidentBytes = ResidentMemory.Peak,
            AnonymousBytes = ResidentMemory.Anonymous,
            FileBackedBytes = ResidentMemory.FileBacked,
        };
    }
}
