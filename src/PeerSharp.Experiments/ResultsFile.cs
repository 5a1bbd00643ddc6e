using System.Text.Json;
using System.Text.Json.Nodes;
using PeerSharp.Config;

namespace PeerSharp.Experiments;

/// <summary>A sweep result and where it was read: "FILE:LINE" in messages.</summary>
/// <param name="Result">The run.</param>
/// <param name="File">The results file, as given.</param>
/// <param name="Line">1-based line number.</param>
public sealed record ResultLine(SweepResult Result, string File, int Line)
{
    /// <summary>"FILE:LINE".</summary>
    public string Where => $"{File}:{Line}";
}

/// <summary>
/// Reads a sweep's results file (experiments/NAME.results.jsonl): one <see cref="SweepResult"/> per line,
/// blank lines ignored. A line that is not a whole result stops the reading with its file and line number:
/// a report that silently left out a run would compare methods on different evidence.
/// </summary>
public static class ResultsFile
{
    /// <summary>Every result of the file; a <see cref="PeerSharpException"/> names the first bad line as FILE:LINE.</summary>
    public static IReadOnlyList<ResultLine> Read(string path)
    {
        if (!File.Exists(path)) throw new PeerSharpException($"results file '{path}' does not exist");
        var results = new List<ResultLine>();
        int number = 0;
        foreach (var text in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            var result = Parse(text, $"{path}:{number}");
            results.Add(new ResultLine(result, path, number));
        }
        return results;
    }

    static SweepResult Parse(string text, string where)
    {
        SweepResult? result;
        try
        {
            // Config objects of older lines are read as they ran, in today's names, as checkpoints are.
            var node = JsonNode.Parse(text) as JsonObject ?? throw new PeerSharpException($"{where} is not a sweep result: expected a JSON object");
            if (node["config"] is JsonObject config) RunConfig.UpgradeRecord(config);
            result = node.Deserialize<SweepResult>(RunConfig.Json);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new PeerSharpException($"{where} is not a sweep result: {e.Message}");
        }
        var missing = Missing(result);
        if (missing is not null) throw new PeerSharpException($"{where} is not a sweep result: it has no {missing}");
        return result!;
    }

    /// <summary>The first collection the report reads that the line leaves null (JSON null survives deserialisation).</summary>
    static string? Missing(SweepResult? result) => result switch
    {
        null => "content (the line is JSON null)",
        { Config: null } => "config",
        { Validation: null } or { Validation.Layers: null } => "validation layers",
        { Test.Layers: null } => "test layers",
        { FlopsByPart: null } => "flopsByPart",
        { Curve: null } => "curve",
        _ when result.Curve.Any(p => p?.Layers is null) => "layers in every curve point",
        _ => null,
    };
}
