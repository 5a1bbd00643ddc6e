using System.Globalization;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// The expert tables and their optimizer state ask Linux for huge pages (HugePages); the kernel may refuse, which only costs speed.
public class HugePagesTests
{
    /// <summary>
    /// The mappings of this process that overlap the whole 2 MiB pages of [start, start + length): whether each carries
    /// the huge-page advice (VmFlags "hg": a mapping's flags are uniform, so the advised range is a mapping of its own
    /// or part of one that is all advised), and the KiB of huge pages they hold.
    /// </summary>
    static (bool AllAdvised, long HugeKiB) Mappings(IntPtr start, long length)
    {
        const long page = 2 << 20;
        long first = ((long)start + page - 1) & ~(page - 1), end = ((long)start + length) & ~(page - 1);
        bool inside = false, allAdvised = true;
        long huge = 0;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int space = line.IndexOf(' '), dash = line.IndexOf('-');
            if (dash > 0 && space > dash && line[..dash].All(char.IsAsciiHexDigit))
            {
                long from = long.Parse(line[..dash], NumberStyles.HexNumber), to = long.Parse(line[(dash + 1)..space], NumberStyles.HexNumber);
                inside = from < end && to > first;
            }
            else if (inside && line.StartsWith("AnonHugePages:"))
                huge += long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            else if (inside && line.StartsWith("VmFlags:"))
                allAdvised &= line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("hg");
        }
        return (allAdvised, huge);
    }

    static void AssertOnHugePages(Tensor tensor, string what)
    {
        var (start, length) = TensorMemory.Bytes(tensor);
        var (advised, huge) = Mappings(start, length);
        Assert.True(advised, $"the {what} ({length:N0} bytes) did not ask for huge pages");
        Assert.True(huge >= 2048, $"the kernel granted no huge page under the {what}");
    }

    [HugePagesFact]
    public void PeerTablesAndTheirMomentsSitOnHugePages()
    {
        using var scope = NewDisposeScope();
        // 2 · 64² rows of 1 KiB: 4 MiB per table, so each holds at least one whole 2 MiB page.
        var peer = new Peer(256, new PeerOptions { SubKeyCount = 64, HeadCount = 2, TopK = 4, KeyDim = 16 });
        foreach (var (name, table) in peer.Tables) AssertOnHugePages(table, name);
        var moments = HugePages.Zeros(peer.Down);
        AssertOnHugePages(moments, "moments");
        Assert.Equal(0, moments.abs().sum().item<float>());
    }

    [HugePagesFact]
    public void PkmValuesSitOnHugePages()
    {
        using var scope = NewDisposeScope();
        var pkm = new ProductKeyMemory(256, new PkmOptions { SubKeyCount = 64, HeadCount = 2, TopK = 4, KeyDim = 16 });
        AssertOnHugePages(pkm.Values, "values");
    }
}

/// <summary>A fact about huge pages: skipped, with the reason, off Linux or where the kernel's mode is "never".</summary>
public sealed class HugePagesFactAttribute : FactAttribute
{
    /// <summary>Skips the test where no huge page can be granted.</summary>
    public HugePagesFactAttribute()
    {
        var mode = MachineInfo.TransparentHugePages();
        if (mode is "never" or "unknown") Skip = $"transparent huge pages are '{mode}' on this machine: none can be granted";
    }
}
