using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// Transparent huge pages for the tensors read at random rows: the expert tables and their optimizer state
/// (DESIGN.md "Where the time goes"). Each row read is a DRAM access, and with 4 KiB pages also a TLB miss: a 2 GiB
/// table spans 512k pages but only 1k pages of 2 MiB. Many Linux kernels (this machine's too) give huge pages only
/// to memory that asks (transparent_hugepage = madvise). Only these tensors ask: asking for every large allocation
/// (libtorch's THP_MEM_ALLOC_ENABLE) was as fast but kept up to 1.6 GB more resident in the layer benchmark. A
/// no-op off Linux, for tensors under 2 MiB, and where the kernel refuses; speed is all it changes.
/// </summary>
internal static unsafe partial class HugePages
{
    const long PageBytes = 2 << 20;
    const int MadviseHugePage = 14;   // MADV_HUGEPAGE: back this range by huge pages from now on
    const int MadviseCollapse = 25;   // MADV_COLLAPSE (Linux 6.1+): move what is already resident to huge pages, now

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(IntPtr start, nuint length, int advice);

    /// <summary>
    /// Asks for huge pages under the whole 2 MiB pages inside <paramref name="tensor"/>'s memory. Pages not yet touched
    /// get them when first written; with <paramref name="collapse"/>, pages already written are moved now (about a
    /// second per GB: for tables initialised by a constructor we do not control).
    /// </summary>
    public static void Advise(Tensor tensor, bool collapse)
    {
        if (!OperatingSystem.IsLinux() || tensor.device_type != DeviceType.CPU || !tensor.is_contiguous()) return;
        var (start, length) = TensorMemory.Bytes(tensor);
        long first = ((long)start + PageBytes - 1) & ~(PageBytes - 1), end = ((long)start + length) & ~(PageBytes - 1);
        if (end <= first) return;
        try
        {
            if (Madvise((IntPtr)first, (nuint)(end - first), MadviseHugePage) == 0 && collapse)
                Madvise((IntPtr)first, (nuint)(end - first), MadviseCollapse);   // refused on older kernels: khugepaged will do it later
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    /// <summary>Zeros shaped like <paramref name="like"/> (of its dtype or <paramref name="dtype"/>), on huge pages.</summary>
    public static Tensor Zeros(Tensor like, ScalarType? dtype = null)
    {
        var zeros = empty_like(like, dtype: dtype ?? like.dtype);
        Advise(zeros, collapse: false);   // fresh pages become huge at their first write
        zeros.zero_();
        // The allocator may hand back memory an earlier tensor had already touched, in small pages, which the advice
        // does not change: those are collapsed now (quick where every page is huge already).
        Advise(zeros, collapse: true);
        return zeros;
    }
}
