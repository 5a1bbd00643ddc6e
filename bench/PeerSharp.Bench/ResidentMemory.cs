namespace PeerSharp.Benchmarks;

/// <summary>
/// The process's resident memory from /proc/self/status (Linux): current (VmRSS) and peak (VmHWM). Writing 5
/// to /proc/self/clear_refs resets the peak to the current value, so the peak of one phase can be measured.
/// Elsewhere every value is 0.
/// </summary>
public static class ResidentMemory
{
    /// <summary>Resident bytes now.</summary>
    public static long Current => Field("VmRSS");

    /// <summary>Peak resident bytes since the start or the last <see cref="ResetPeak"/>.</summary>
    public static long Peak => Field("VmHWM");

    /// <summary>Resident bytes now that are the process's own memory (RssAnon).</summary>
    public static long Anonymous => Field("RssAnon");

    /// <summary>Resident bytes now that are pages of mapped files (RssFile): clean page cache the kernel can drop.</summary>
    public static long FileBacked => Field("RssFile");

    /// <summary>Makes the peak the current value (a no-op where the system does not allow it).</summary>
    public static void ResetPeak()
    {
        try
        {
            if (OperatingSystem.IsLinux()) File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    static long Field(string name)
    {
        if (!OperatingSystem.IsLinux()) return 0;
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(name + ":"));
        return line is null ? 0 : long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
