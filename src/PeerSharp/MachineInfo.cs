using System.Runtime.InteropServices;

namespace PeerSharp;

/// <summary>What a measurement ran on, for its report (benchmarks, sweep timings); Load is the load average when it was taken.</summary>
public sealed record MachineInfo(string Cpu, int Cores, string VectorWidth, double MemoryGiB, string Os, string Runtime, string TorchSharp, string Load)
{
    /// <summary>The 1, 5 and 15-minute load averages now (other work on the machine slows every measurement).</summary>
    public static string LoadAverage() =>
        OperatingSystem.IsLinux() ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

    /// <summary>The 1-minute load average now; NaN where the system does not say.</summary>
    public static double RecentLoad() =>
        OperatingSystem.IsLinux() && double.TryParse(File.ReadAllText("/proc/loadavg").Split(' ')[0], System.Globalization.NumberStyles.Float,
                                                     System.Globalization.CultureInfo.InvariantCulture, out var load) ? load : double.NaN;

    /// <summary>
    /// Linux's transparent huge page mode ("always", "madvise" or "never", from /sys/kernel/mm/transparent_hugepage/enabled);
    /// "unknown" elsewhere. Under "madvise" only memory that asks gets huge pages, as the expert tables do (Kernels/Common/HugePages).
    /// </summary>
    public static string TransparentHugePages()
    {
        const string path = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!OperatingSystem.IsLinux() || !File.Exists(path)) return "unknown";
        var text = File.ReadAllText(path);   // e.g. "always [madvise] never": the bracketed mode is the one in force
        int open = text.IndexOf('['), close = text.IndexOf(']');
        return open >= 0 && close > open ? text[(open + 1)..close] : text.Trim();
    }

    /// <summary>
    /// What decides a run's floating-point roundings: the CPU and the vector instructions it offers (libtorch picks its
    /// kernels by them, so the same seed gives slightly other numbers on another CPU family), e.g. "AMD EPYC, AVX2 + FMA".
    /// </summary>
    public string Numerics => $"{Cpu}, {VectorWidth}";

    /// <summary>This machine.</summary>
    public static MachineInfo Current()
    {
        string cpu = "unknown CPU";
        double memory = 0;
        if (OperatingSystem.IsLinux())
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? cpu;
            var total = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:"));
            if (total is not null) memory = long.Parse(total.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / (1024.0 * 1024);
        }
        var vector = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "AVX-512 available, kernels use AVX2 + FMA"
                   : System.Runtime.Intrinsics.X86.Fma.IsSupported ? "AVX2 + FMA" : "no AVX2";
        return new MachineInfo(cpu, Environment.ProcessorCount, vector, memory, RuntimeInformation.OSDescription,
                               RuntimeInformation.FrameworkDescription, typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString() ?? "?",
                               LoadAverage());
    }
}
