using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace PeerSharp;

/// <summary>
/// The names of the settings' enums as they appear in config files, checkpoints and on the command line: the
/// member's <see cref="JsonStringEnumMemberNameAttribute"/> where it has one ("expert-choice"), else its camelCase name
/// ("gpt2", "rotary"). One spelling everywhere, the one the JSON converter writes.
/// </summary>
public static class EnumNames
{
    /// <summary>The name of <paramref name="value"/>.</summary>
    public static string Name<T>(T value) where T : struct, Enum
    {
        var member = typeof(T).GetField(value.ToString());
        return member?.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name ?? JsonNamingPolicy.CamelCase.ConvertName(value.ToString());
    }

    /// <summary>Every name of <typeparamref name="T"/>, in declaration order.</summary>
    public static IReadOnlyList<string> All<T>() where T : struct, Enum => [.. Enum.GetValues<T>().Select(Name)];

    /// <summary>The member called <paramref name="text"/> (case-insensitive); a <see cref="PeerSharpException"/> naming the choices otherwise.</summary>
    public static T Parse<T>(string text, string what) where T : struct, Enum
    {
        foreach (var value in Enum.GetValues<T>())
            if (string.Equals(Name(value), text.Trim(), StringComparison.OrdinalIgnoreCase)) return value;
        throw new PeerSharpException($"{what} '{text}' is not known; expected {string.Join(", ", All<T>())}");
    }
}
