using System.Runtime.InteropServices;

namespace PeerSharp.Cli;

/// <summary>
/// Process settings for fast CPU training, applied by the CLI before the first tensor exists (Linux, glibc):
/// <list type="bullet">
/// <item>OMP_WAIT_POLICY=PASSIVE (unless set): libtorch's OpenMP workers sleep between parallel regions
/// instead of spinning. On a small machine shared with other work, or alternating with the C# kernels' own
/// threads, spinning workers can make a 2-thread step many times slower (measured: a small model's step
/// went from 56 ms to 2.7 s while another process used the CPU).</item>
/// <item>glibc malloc keeps large blocks: no mmap for big allocations and up to 2 GiB of free heap kept
/// (M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 2 GiB), so the tensors a step allocates reuse the previous step's
/// pages instead of faulting in and zeroing fresh ones every step (at N = 1024² that was ~20% of a step's CPU
/// time, in the kernel). The price: resident memory stays near its peak.</item>
/// <item>THP_MEM_ALLOC_ENABLE=1 (unless set): libtorch aligns every allocation of 2 MiB or more to 2 MiB and
/// asks Linux for transparent huge pages there (madvise(MADV_HUGEPAGE); this machine's kernel grants them only on
/// request). The expert tables are read at random rows, one DRAM access per row, and with 4 KiB pages each access
/// also misses the TLB: a 2 GiB table spans 512k pages but only 1k huge pages. Measured at N = 1024² (layer
/// benchmark, docs/PERFORMANCE.md): forward 143 → 117 ms per 1k tokens, whole step −12%, peak RSS +0.2 GB.</item>
/// </list>
/// All three only take effect when applied before libtorch loads (OpenMP reads its environment once).
/// </summary>
public static class NativeRuntime
{
    const int TrimThreshold = -1;   // M_TRIM_THRESHOLD
    const int MmapMax = -4;         // M_MMAP_MAX

    /// <summary>Applies the settings; a no-op off Linux or where the C library lacks the calls.</summary>
    public static void Configure()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            foreach (var (name, value) in new[] { ("OMP_WAIT_POLICY", "PASSIVE"), ("THP_MEM_ALLOC_ENABLE", "1") })
            {
                if (Environment.GetEnvironmentVariable(name) is not null) continue;
                SetEnvironment(name, value, 0);                  // this process's libtorch
                Environment.SetEnvironmentVariable(name, value);  // child processes too
            }
            MallocOption(MmapMax, 0);
            MallocOption(TrimThreshold, int.MaxValue);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (e.g. musl): keep the defaults.
        }
    }

    [DllImport("libc.so.6", EntryPoint = "setenv")]
    static extern int SetEnvironment(string name, string value, int overwrite);

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    static extern int MallocOption(int parameter, int value);
}
