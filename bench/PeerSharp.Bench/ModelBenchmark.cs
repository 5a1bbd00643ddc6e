using System.Diagnostics;
using System.Text.Json.Serialization;
using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Benchmarks;

/// <summary>One language model to time, with its batch and step counts.</summary>
public sealed record ModelCase
{
    /// <summary>The model (the paper's placement: PEER, or a baseline, in the middle block; or all dense).</summary>
    public ModelConfig Model { get; init; } = new()
    {
        ContextLength = 256, ModelDim = 256, LayerCount = 12, AttentionHeads = 8,
        PeerOptions = new PeerOptions { SubKeyCount = 1024, HeadCount = 8, TopK = 16, KeyDim = 128 },
    };

    /// <summary>Sequences per step.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Untimed steps first.</summary>
    public int WarmupSteps { get; init; } = 1;

    /// <summary>Timed steps.</summary>
    public int Steps { get; init; } = 3;

    /// <summary>Threads of libtorch and of the C# kernels.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>Training throughput of one model.</summary>
public sealed record ModelResult
{
    /// <summary>What was measured.</summary>
    public required ModelCase Case { get; init; }

    /// <summary>Trainable parameters.</summary>
    public long Parameters { get; init; }

    /// <summary>Median training step, ms.</summary>
    public double StepMs { get; init; }

    /// <summary>Training tokens per second at the median step.</summary>
    public double TokensPerSecond { get; init; }

    /// <summary>Peak resident memory of the process, bytes.</summary>
    public long PeakResidentBytes { get; init; }
}

/// <summary>
/// Times full training steps (forward, cross-entropy, backward, clipping, optimizer) of a language model on
/// random token sequences, with the optimizer <see cref="OptimizerFactory"/> builds for a run.
/// </summary>
public static class ModelBenchmark
{
    /// <summary>Runs one model.</summary>
    public static ModelResult Run(ModelCase c)
    {
        set_num_threads(c.Threads);
        manual_seed(1);
        using var model = new TransformerLM(c.Model);
        var config = new TrainConfig();
        using var optimizer = OptimizerFactory.Create(model, config);
        using var trainStep = new TrainStep(model, optimizer, config);
        var tokens = randint(c.Model.VocabSize, [c.BatchSize, c.Model.ContextLength + 1], dtype: ScalarType.Int64);
        var inputs = tokens[.., ..^1].contiguous();   // (B, T)
        var targets = tokens[.., 1..].contiguous();   // (B, T)
        var steps = new List<double>();
        for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
        {
            var start = Stopwatch.GetTimestamp();
            trainStep.Run(step, config.LearningRate, () => model.Loss(inputs, targets));
            if (step >= c.WarmupSteps) steps.Add(LayerBenchmark.Milliseconds(start, Stopwatch.GetTimestamp()));
        }
        var median = LayerBenchmark.Median(steps);
        return new ModelResult
        {
            Case = c,
            Parameters = model.parameters().Sum(p => p.numel()),
            StepMs = median,
            TokensPerSecond = c.BatchSize * c.Model.ContextLength / (median / 1000),
            PeakResidentBytes = ResidentMemory.Peak,
        };
    }
}
