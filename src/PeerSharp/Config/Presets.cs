using System.Text.Json;
using System.Text.Json.Nodes;

namespace PeerSharp.Config;

/// <summary>
/// Named run configurations, from a seconds-long test model to the larger experiment models: data, in presets.json
/// beside this file (embedded in the library), each an overlay of the config file's format on the defaults with a
/// one-line description.
/// </summary>
public static class Presets
{
    /// <summary>The preset the README's command trains.</summary>
    public const string Default = "default";

    static readonly Lazy<List<(string Name, string Description, RunConfig Config)>> All = new(Read);

    static List<(string Name, string Description, RunConfig Config)> Read()
    {
        using var stream = typeof(Presets).Assembly.GetManifestResourceStream("PeerSharp.Config.presets.json")
            ?? throw new InvalidOperationException("the library holds no presets.json");
        var presets = JsonNode.Parse(stream, documentOptions: new() { CommentHandling = JsonCommentHandling.Skip })!.AsObject();
        return [.. presets.Select(preset =>
        {
            var overlay = preset.Value!.AsObject().DeepClone().AsObject();
            var description = overlay["description"]!.GetValue<string>();
            overlay.Remove("description");
            return (preset.Key, description, RunConfig.Overlay(new RunConfig(), overlay, $"preset '{preset.Key}'"));
        })];
    }

    /// <summary>Names and one-line descriptions of every preset.</summary>
    public static IEnumerable<(string Name, string Description)> List() => All.Value.Select(p => (p.Name, p.Description));

    /// <summary>The named preset.</summary>
    public static RunConfig Get(string name) =>
        All.Value.FirstOrDefault(p => p.Name == name).Config
            ?? throw new PeerSharpException($"unknown preset '{name}'; expected one of {string.Join(", ", All.Value.Select(p => p.Name))}");
}
