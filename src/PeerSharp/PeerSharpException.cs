namespace PeerSharp;

/// <summary>
/// A problem with what the user asked for (bad data, bad settings, a bad checkpoint), as opposed to a bug.
/// The message is one sentence naming the bad value and what was expected; the CLI prints it without a
/// stack trace and exits non-zero.
/// </summary>
public sealed class PeerSharpException(string message, Exception? inner = null) : Exception(message, inner);
