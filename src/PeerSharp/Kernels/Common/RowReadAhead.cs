using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// For expert tables memory-mapped from a file (DESIGN.md "Memory-mapped tables"): once a forward knows which rows it
/// will read, the pages that hold them are requested from the disk all at once (madvise(MADV_WILLNEED) starts their
/// reads without waiting), instead of one page fault after another as the experts reach them. A token's h·k
/// selections are scattered over the file; a row not in the page cache is a disk read, and read one at a time their
/// latencies add up, while the disk serves many at once. Tables in ordinary memory are not touched. Linux only; a
/// refused request changes speed, never results.
/// </summary>
internal static unsafe partial class RowReadAhead
{
    const int AdviseWillNeed = 3;   // MADV_WILLNEED
    const long PageBytes = 4096;

    /// <summary>The mapped address ranges [start, end), registered by whoever maps a file.</summary>
    static readonly List<(long Start, long End)> Mapped = [];

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(IntPtr address, nuint length, int advice);

    /// <summary>Tables inside [start, start + length) will be read ahead from now on.</summary>
    public static void Register(IntPtr start, long length)
    {
        lock (Mapped) Mapped.Add(((long)start, (long)start + length));
    }

    /// <summary>The range starting at <paramref name="start"/> is unmapped.</summary>
    public static void Unregister(IntPtr start)
    {
        lock (Mapped) Mapped.RemoveAll(r => r.Start == (long)start);
    }

    /// <summary>Whether the contiguous CPU tensor's first byte lies in a registered mapping.</summary>
    static bool IsMapped(Tensor table)
    {
        if (table.device_type != DeviceType.CPU || !table.is_contiguous() || table.numel() == 0) return false;
        long first = (long)TensorMemory.Bytes(table).Start;
        lock (Mapped) return Mapped.Exists(r => first >= r.Start && first < r.End);
    }

    /// <summary>
    /// Asks for the pages of rows <paramref name="ids"/> (any shape, int64) of each mapped table [N, width]: the
    /// distinct pages, ascending, with neighbouring pages merged into one request.
    /// </summary>
    public static void Request(Tensor ids, params Tensor[] tables)
    {
        if (Mapped.Count == 0 || ids.numel() == 0) return;   // nothing mapped (training, loaded models): no work; only Linux maps
        foreach (var table in tables)
        {
            if (!IsMapped(table)) continue;
            long rowBytes = table.shape[1] * table.element_size();
            var (start, _) = TensorMemory.Bytes(table);
            var rows = ids.contiguous();
            long* pRows = TensorMemory.Pointer<long>(rows);
            long count = rows.numel();
            var pages = new long[2 * count];   // the first and last page of each row
            for (long i = 0; i < count; i++)
            {
                long address = (long)start + pRows[i] * rowBytes;
                pages[2 * i] = address / PageBytes;
                pages[2 * i + 1] = (address + rowBytes - 1) / PageBytes;
            }
            Array.Sort(pages);
            for (long i = 0; i < pages.Length;)
            {
                long from = pages[i], to = from;
                while (++i < pages.Length && pages[i] <= to + 1) to = pages[i];
                Madvise((IntPtr)(from * PageBytes), (nuint)((to - from + 1) * PageBytes), AdviseWillNeed);
            }
        }
    }
}
