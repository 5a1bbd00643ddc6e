using PeerSharp.Benchmarks;
using PeerSharp.Layers;
using PeerSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// Runs alone: it reads the process's peak resident memory, which parallel tests would disturb.
[CollectionDefinition(nameof(StepMemoryTests), DisableParallelization = true)]
public class StepMemoryCollection;

/// A training step's memory beyond the parameters and the optimizer state must not grow with N: no dense
/// [N, d] gradients, no N-sized temporaries in the optimizer. Measured as the peak resident memory of one
/// steady-state step above the memory resident before it (Linux: /proc/self/clear_refs resets the peak).
[Collection(nameof(StepMemoryTests))]
public class StepMemoryTests
{
    const double MiB = 1024 * 1024;

    /// Peak growth of resident memory, in MiB, during one step of a PEER layer with N = n², d_model = 256
    /// (each table is 64 MiB at n = 256, and freed blocks of that size go back to the system at once).
    static double StepPeakGrowth(int subKeys, ExpertKernel kernel)
    {
        using var scope = NewDisposeScope();
        var layer = new Peer(new PeerOptions { ModelDim = 256, SubKeyCount = subKeys, HeadCount = 4, TopK = 4, KeyDim = 32, Kernel = kernel });
        var named = layer.named_parameters().Select(p => (p.name, p.parameter, 0.1)).ToList();
        bool IsTable(string name) => name is "down.weight" or "up.weight";
        IOptimizer tables = kernel == ExpertKernel.Fused
            ? new SparseAdamW(named.Where(p => IsTable(p.name)))
            : new AdamW(named.Where(p => IsTable(p.name)));
        using var optimizer = new CompositeOptimizer((new AdamW(named.Where(p => !IsTable(p.name))), null), (tables, null));
        var g = new Generator(1);
        var x = randn(128, 256, generator: g);
        var r = randn(128, 256, generator: g);
        void Step()
        {
            using var step = NewDisposeScope();
            (layer.forward(x) * r).sum().backward();
            GradientClipping.ClipGlobalNorm(layer.parameters(), 1.0);
            optimizer.Step(1e-3);
            optimizer.ZeroGrad();
        }
        Step();
        Step();
        GC.Collect();
        ResidentMemory.ResetPeak();
        var before = ResidentMemory.Current;
        Step();
        return (ResidentMemory.Peak - before) / MiB;
    }

    [Fact]
    public void FusedStepMemoryDoesNotGrowWithExpertCount()
    {
        if (!OperatingSystem.IsLinux()) return;
        var small = StepPeakGrowth(16, ExpertKernel.Fused);      // N = 256
        var large = StepPeakGrowth(256, ExpertKernel.Fused);     // N = 65536: tables 64 MiB each
        Assert.True(large - small < 8, $"step memory grew by {large - small:F1} MiB from N = 256 to N = 65536");

        // Control: the tensor-op path with dense AdamW has two dense [N, d] gradients, so the measure sees it.
        var plainSmall = StepPeakGrowth(16, ExpertKernel.Plain);
        var plainLarge = StepPeakGrowth(256, ExpertKernel.Plain);
        Assert.True(plainLarge - plainSmall > 100, $"the control grew only {plainLarge - plainSmall:F1} MiB");
    }
}
