using System.ComponentModel;
using System.Diagnostics;

namespace PeerSharp.Tests.Cli;

/// <summary>
/// A fact that mounts a small tmpfs, to fill a disk on purpose: reported as skipped, with the reason, where this
/// process may not mount one (off Linux, or without root's CAP_SYS_ADMIN, as in most containers and CI runners).
/// </summary>
public sealed class RootMountFactAttribute : FactAttribute
{
    static readonly Lazy<string?> WhyNot = new(Probe);

    /// <summary>Skips the test where a tmpfs cannot be mounted.</summary>
    public RootMountFactAttribute()
    {
        if (WhyNot.Value is { } reason) Skip = reason;
    }

    /// <summary>Mounts a tmpfs of <paramref name="size"/> (like "200k") on the existing <paramref name="folder"/>.</summary>
    public static void Mount(string folder, string size)
    {
        if (Tool("mount", "-t", "tmpfs", "-o", $"size={size}", "tmpfs", folder) != 0)
            throw new InvalidOperationException($"mount -t tmpfs on {folder} failed");
    }

    /// <summary>Unmounts it, lazily, so the folder can be deleted even if a process still has a file open there.</summary>
    public static void Unmount(string folder) => Tool("umount", "-l", folder);

    static string? Probe()
    {
        const string reason = "fills a disk by mounting a 200 kB tmpfs, which needs Linux and root (CAP_SYS_ADMIN); the disk-full path is not tested here";
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") return reason;
        var probe = Path.Combine(Path.GetTempPath(), $"peersharp-mount-probe-{Guid.NewGuid():N}");
        Directory.CreateDirectory(probe);
        try
        {
            if (Tool("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe) != 0) return reason;
            Unmount(probe);
            return null;
        }
        catch (Win32Exception)
        {
            return reason;   // no mount command
        }
        finally
        {
            Directory.Delete(probe);
        }
    }

    static int Tool(string name, params string[] args)
    {
        var start = new ProcessStartInfo(name) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        process.StandardOutput.ReadToEnd();
        process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode;
    }
}
