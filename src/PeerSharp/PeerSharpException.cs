namespace PeerSharp;

/// <summary>
/// A problem with what the user asked for (bad data, bad settings, a bad checkpoint), as opposed to a bug.
/// The message is one sentence naming the bad value and what was expected; the CLI prints it without a
/// stack trace and exits non-zero.
/// </summary>
public sealed class PeerSharpException(string message, Exception? inner = null) : Exception(message, inner)
{
    const int NoSpaceLeft = 28;       // ENOSPC
    const int QuotaExceeded = 122;    // EDQUOT (Linux)

    /// <summary>
    /// What to tell the user when <paramref name="exception"/> is a full disk (ENOSPC, EDQUOT): what happened and
    /// how to go on; null for any other failure. The one wording of it, for checkpoints and for the CLI alike.
    /// </summary>
    public static string? DiskFull(Exception exception) => DiskFull(exception, "continue with --resume from the last checkpoint");

    /// <summary><see cref="DiskFull(Exception)"/> where the way to go on is <paramref name="then"/>, not a resume (no checkpoint exists yet).</summary>
    internal static string? DiskFull(Exception exception, string then) => exception is IOException { HResult: NoSpaceLeft or QuotaExceeded }
        ? $"the disk is full ({exception.Message}); free some space, then {then}"
        : null;
}
