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
/// </list>
/// Both only take effect when applied before libtorch loads (OpenMP reads its environment once).
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
            if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null)
            {
                SetEnvironment("OMP_WAIT_POLICY", "PASSIVE", 0);
                Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE");   // child processes too
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
