using PeerSharp.Benchmarks;
using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// A training step's memory beyond the parameters and the optimizer state must not grow with N: no dense
/// [N, d] gradients, no N-sized temporaries in the optimizer. Measured as the peak resident memory of one
/// steady-state step above the memory resident before it (Linux: /proc/self/clear_refs resets the peak).
/// (The test assembly runs its tests one at a time, so no other test disturbs the process's memory.)
public class StepMemoryTests
{
    const double MiB = 1024 * 1024;

    /// Peak growth of resident memory, in MiB, during one step of a PEER layer with N = n², d_model = 256
    /// (each table is 64 MiB at n = 256, and freed blocks of that size go back to the system at once).
    static double StepPeakGrowth(int subKeys, KernelChoice kernel)
    {
        using var scope = NewDisposeScope();
        var layer = new Peer(256, new PeerOptions { SubKeyCount = subKeys, HeadCount = 4, TopK = 4, KeyDim = 32, Kernel = kernel });
        // What a training run builds: sparse AdamW on the tables with the fused kernel, dense AdamW with the plain one.
        using var optimizer = OptimizerFactory.Create(layer, new TrainConfig());
        using var trainStep = new TrainStep(layer, optimizer, new TrainConfig());
        var g = new Generator(1);
        var x = randn(128, 256, generator: g);
        var r = randn(128, 256, generator: g);
        void Step() => trainStep.Run(0, 1e-3, () => (layer.forward(x) * r).sum());
        Step();
        Step();
        GC.Collect();
        ResidentMemory.ResetPeak();
        var before = ResidentMemory.Current;
        Step();
        return (ResidentMemory.Peak - before) / MiB;
    }

    [LinuxFact]
    public void FusedStepMemoryDoesNotGrowWithExpertCount()
    {
        var small = StepPeakGrowth(16, KernelChoice.Fused);      // N = 256
        var large = StepPeakGrowth(256, KernelChoice.Fused);     // N = 65536: tables 64 MiB each
        Assert.True(large - small < 8, $"step memory grew by {large - small:F1} MiB from N = 256 to N = 65536");

        // Control: the tensor-op path with dense AdamW has two dense [N, d] gradients, so the measure sees it.
        var plainSmall = StepPeakGrowth(16, KernelChoice.Plain);
        var plainLarge = StepPeakGrowth(256, KernelChoice.Plain);
        Assert.True(plainLarge - plainSmall > 100, $"the control grew only {plainLarge - plainSmall:F1} MiB");
    }
}
