namespace PeerSharp.Tests.Cli;

/// <summary>
/// A fact about stopping on a signal, skipped with the reason when this test process ignores that signal. Under nohup
/// the test runner ignores SIGHUP, and so does every process it starts: .NET leaves an inherited SIG_IGN in place even
/// where the program registers for the signal (as nohup intends), so the peer process never sees it.
/// </summary>
public sealed class SignalNotIgnoredFactAttribute : FactAttribute
{
    /// <summary>Skips the test when <paramref name="signal"/> is ignored here.</summary>
    public SignalNotIgnoredFactAttribute(int signal)
    {
        if (IgnoredHere(signal))
            Skip = $"signal {signal} is ignored by this test process (started under nohup?), and so by the peer process it starts: stopping on it cannot be tested here";
    }

    /// <summary>Whether <paramref name="signal"/> is ignored by this process (Linux: the SigIgn mask of /proc/self/status).</summary>
    static bool IgnoredHere(int signal)
    {
        if (!File.Exists("/proc/self/status")) return false;
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:"));
        return line is not null && ((Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) >> (signal - 1)) & 1) == 1;
    }
}
