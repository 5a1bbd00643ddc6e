using System.Diagnostics;
using System.Text.Json.Serialization;
using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Benchmarks;

/// <summary>The feed-forward layers `peer bench` compares.</summary>
public enum LayerKind
{
    /// <summary>(a) The dense GELU feed-forward with 4·d_model hidden units.</summary>
    DenseFfw,
    /// <summary>(b) A dense GELU feed-forward whose forward FLOPs equal the PEER layer's.</summary>
    DenseEqualFlops,
    /// <summary>(c) PEER in pure tensor ops with dense AdamW (<see cref="KernelChoice.Plain"/>).</summary>
    PeerPlain,
    /// <summary>(d) PEER with the fused kernels and sparse AdamW on the expert tables.</summary>
    PeerFused,
}

/// <summary>What a layer and a kernel benchmark share: the PEER layer's shape and how many steps to time.</summary>
public abstract record TimedCase
{
    /// <summary>d_model.</summary>
    public int ModelDim { get; init; } = 256;

    /// <summary>The PEER layer (for the dense layers: the PEER layer they are matched with).</summary>
    public PeerOptions PeerOptions { get; init; } = new();

    /// <summary>Tokens per step.</summary>
    public int Tokens { get; init; } = 4096;

    /// <summary>Untimed steps first.</summary>
    public int WarmupSteps { get; init; } = 2;

    /// <summary>Timed steps; the report gives their medians.</summary>
    public int Steps { get; init; } = 5;

    /// <summary>Threads of libtorch and of the C# kernels.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>One layer configuration to time.</summary>
public sealed record LayerCase : TimedCase
{
    /// <summary>Which layer.</summary>
    public LayerKind Kind { get; init; }

    /// <summary>What the optimizer of the expert tables keeps (<see cref="TrainConfig.TableState"/>; PEER fused only).</summary>
    public TableOptimizerState TableState { get; init; } = TableOptimizerState.Full;

    /// <summary>Whether the expert tables are updated inside the backward (<see cref="TrainConfig.UpdateInBackward"/>; PEER fused only).</summary>
    public bool UpdateInBackward { get; init; }
}

/// <summary>Medians per 1k tokens and memory of one layer configuration.</summary>
public sealed record LayerResult
{
    /// <summary>What was measured.</summary>
    public required LayerCase Case { get; init; }

    /// <summary>Hidden width of a dense layer (0 for PEER).</summary>
    public int HiddenDim { get; init; }

    /// <summary>Trainable parameters.</summary>
    public long Parameters { get; init; }

    /// <summary>Forward FLOPs per token.</summary>
    public long ForwardFlopsPerToken { get; init; }

    /// <summary>Forward time per 1k tokens, ms (median).</summary>
    public double ForwardMs { get; init; }

    /// <summary>Backward time per 1k tokens, ms (median); with updates in the backward it includes the expert tables' update.</summary>
    public double BackwardMs { get; init; }

    /// <summary>Update time per 1k tokens, ms (median): gradient clipping, optimizer step, clearing gradients.</summary>
    public double OptimizerMs { get; init; }

    /// <summary>Median of the whole step per 1k tokens, ms.</summary>
    public double StepMs { get; init; }

    /// <summary>
    /// Median CPU time of the whole step per 1k tokens, ms, over all threads: the work done, which other
    /// processes on a shared machine disturb less than the wall time.
    /// </summary>
    public double StepCpuMs { get; init; }

    /// <summary>Peak resident memory of the process, bytes.</summary>
    public long PeakResidentBytes { get; init; }

    /// <summary>
    /// Peak resident memory of the first forward above the memory resident before it, bytes: the activations
    /// kept for the backward and the forward's temporaries (measured on the first step, before the process
    /// holds freed blocks that a later forward would reuse).
    /// </summary>
    public long ActivationBytes { get; init; }

    /// <summary>
    /// Peak resident memory of the steps above the memory resident before the first one, bytes: activations,
    /// gradients and temporaries, on top of the parameters and optimizer state that persist between steps.
    /// </summary>
    public long StepBytes { get; init; }
}

/// <summary>
/// Times forward, backward and update of one feed-forward layer on random inputs, as `peer bench` does for each
/// configuration (in a process of its own, so that the peak resident memory is the configuration's).
/// The loss is Σ y·r with a fixed random r, so the backward gets a dense, non-trivial output gradient.
/// </summary>
public static class LayerBenchmark
{
    /// <summary>Runs one configuration.</summary>
    public static LayerResult Run(LayerCase c)
    {
        set_num_threads(c.Threads);
        manual_seed(1);
        var (layer, hidden) = Build(c);
        var config = new TrainConfig { TableState = c.TableState, UpdateInBackward = c.UpdateInBackward };
        using var optimizer = OptimizerFactory.Create(layer, config);
        using var trainStep = new TrainStep(layer, optimizer, config);
        var x = randn(c.Tokens, c.ModelDim).requires_grad_();   // (tokens, d_model), a leaf so that dx is computed
        var r = randn(c.Tokens, c.ModelDim);
        var forward = new List<double>();
        var backward = new List<double>();
        var update = new List<double>();
        var cpu = new List<double>();
        var process = Process.GetCurrentProcess();
        // Parameters and optimizer state exist now; what the steps add on top is their memory. (Measured from
        // here rather than per step: the process keeps freed blocks, so a later step reuses earlier pages.)
        GC.Collect();
        long peakBeforeSteps = ResidentMemory.Peak;
        ResidentMemory.ResetPeak();
        long setup = ResidentMemory.Current, activations = 0;
        long t0 = 0, t1 = 0, t2 = 0;
        int current = 0;
        trainStep.StageCompleted += stage =>
        {
            if (stage == TrainStage.Forward)
            {
                t1 = Stopwatch.GetTimestamp();
                if (current == 0) activations = ResidentMemory.Peak - setup;
            }
            else if (stage == TrainStage.Backward) t2 = Stopwatch.GetTimestamp();
        };
        for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
        {
            current = step;
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            t0 = Stopwatch.GetTimestamp();
            trainStep.Run(step, config.LearningRate, () => (layer.forward(x) * r).sum());
            x.grad = null;
            var t3 = Stopwatch.GetTimestamp();
            process.Refresh();
            var cpu1 = process.TotalProcessorTime;
            if (step < c.WarmupSteps) continue;
            double perThousand = 1000.0 / c.Tokens;
            cpu.Add((cpu1 - cpu0).TotalMilliseconds * perThousand);
            forward.Add(Milliseconds(t0, t1) * perThousand);
            backward.Add(Milliseconds(t1, t2) * perThousand);
            update.Add(Milliseconds(t2, t3) * perThousand);
        }
        return new LayerResult
        {
            Case = c,
            HiddenDim = hidden,
            Parameters = layer.parameters().Sum(p => p.numel()),
            ForwardFlopsPerToken = hidden > 0 ? (long)FlopCounter.DenseFeedForward(c.ModelDim, hidden) : (long)FlopCounter.Peer(c.ModelDim, c.PeerOptions).Where(l => l.MatrixProducts).Sum(l => l.Flops),
            ForwardMs = Median(forward),
            BackwardMs = Median(backward),
            OptimizerMs = Median(update),
            StepMs = Median(forward.Select((f, i) => f + backward[i] + update[i]).ToList()),
            StepCpuMs = Median(cpu),
            PeakResidentBytes = Math.Max(ResidentMemory.Peak, peakBeforeSteps),
            ActivationBytes = activations,
            StepBytes = ResidentMemory.Peak - setup,
        };
    }

    static (nn.Module<Tensor, Tensor> Layer, int Hidden) Build(LayerCase c)
    {
        switch (c.Kind)
        {
            case LayerKind.DenseFfw:
                return (new DenseFeedForward(c.ModelDim, 4 * c.ModelDim), 4 * c.ModelDim);
            case LayerKind.DenseEqualFlops:
                var hidden = FlopCounter.EqualFlopsHiddenDim(c.ModelDim, c.PeerOptions);
                return (new DenseFeedForward(c.ModelDim, hidden), hidden);
            default:
                return (new Peer(c.ModelDim, c.PeerOptions), 0);
        }
    }

    internal static double Milliseconds(long start, long end) => (end - start) * 1000.0 / Stopwatch.Frequency;

    internal static double Median(List<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        int mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
