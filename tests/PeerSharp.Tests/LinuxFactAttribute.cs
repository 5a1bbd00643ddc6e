namespace PeerSharp.Tests;

/// <summary>A fact that reads Linux-only process files (/proc): reported as skipped, with the reason, elsewhere.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    /// <summary>Skips the test off Linux.</summary>
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "measures resident memory through /proc, which only Linux has";
    }
}
