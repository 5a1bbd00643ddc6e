using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace PeerSharp.Cli;

/// <summary>
/// The one-line messages of failures the user causes and can fix that do not arrive as a
/// <see cref="PeerSharpException"/>: a command line that does not parse, and a machine that runs out of memory
/// or disk. Anything else is a bug and keeps its stack trace.
/// </summary>
public static partial class UserErrors
{
    /// <summary>The parse errors of a command line as one line, with where to read the usage.</summary>
    public static string Describe(ParseResult parse)
    {
        var errors = parse.Errors.Select(e => Sentence(ParseFailure().Replace(e.Message, m => $"{m.Groups["option"]} '{m.Groups["value"]}' is not {Expected(m.Groups["type"].Value)}")));
        var help = parse.CommandResult.Command is RootCommand ? "peer --help" : $"peer {parse.CommandResult.Command.Name} --help";
        return $"{string.Join("; ", errors.Distinct())} (usage: {help})";
    }

    /// <summary>The line for an exception the user can fix though it is not a <see cref="PeerSharpException"/>; null for a bug.</summary>
    public static string? Describe(Exception exception) => exception switch
    {
        AggregateException { InnerExceptions.Count: 1 } e => Describe(e.InnerExceptions[0]),
        ExternalException e when e.GetType() == typeof(ExternalException) && e.Message.Contains("can't allocate memory", StringComparison.Ordinal)
            => $"libtorch: {AllocatorMessage(e.Message)}; expected a smaller model, batch or context",
        OutOfMemoryException => "out of memory; expected a smaller model, batch or context",
        IOException e when PeerSharpException.DiskFull(e) is { } diskFull => diskFull,
        _ => null,
    };

    /// <summary>libtorch's first line without its source location: "DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes…".</summary>
    static string AllocatorMessage(string message)
    {
        var line = message.Split('\n')[0].Trim();
        var start = line.IndexOf("DefaultCPUAllocator", StringComparison.Ordinal);
        return start >= 0 ? line[start..] : line;
    }

    static string Expected(string type) => type switch
    {
        _ when type.Contains("Int32") => "a whole number (at most 2147483647)",
        _ when type.Contains("Int64") => "a whole number",
        _ when type.Contains("Double") => "a number",
        _ when type.Contains("Boolean") => "true or false",
        _ => "a valid value",
    };

    static string Sentence(string message) =>
        message.Length == 0 ? message : char.ToLowerInvariant(message[0]) + message[1..].TrimEnd('.');

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for option '(?<option>.*)' as expected type '(?<type>.*)'\.?$")]
    private static partial Regex ParseFailure();
}
