using System.Text.Json;
using PeerSharp.Evaluation;

namespace PeerSharp.Serving;

/// <summary>
/// The body of POST /v1/completions, read as the OpenAI API reads it: a field of the wrong type, a value out of
/// range or a field it does not know is a 400 naming the field; fields of the API that a base model cannot honour
/// (echo, logprobs, n above 1, penalties) are accepted only at their defaults.
/// </summary>
public sealed record CompletionParameters(string? Model, string Prompt, SamplingOptions Sampling, IReadOnlyList<string> Stop, bool Stream, bool IncludeUsage)
{
    static readonly HashSet<string> Ignored = ["user", "suffix", "logit_bias", "stream_options", "best_of", "echo", "logprobs", "presence_penalty", "frequency_penalty"];

    /// <summary>Reads a request body; <paramref name="maxTokens"/> is the server's cap on max_tokens.</summary>
    public static CompletionParameters Parse(JsonElement body, int maxTokens)
    {
        if (body.ValueKind != JsonValueKind.Object) throw new ApiError(400, "the request body must be a JSON object");
        string? model = null, prompt = null;
        int tokens = 16, topK = 0;
        double temperature = 1, topP = 1;
        long seed = Random.Shared.NextInt64();
        var stop = new List<string>();
        bool stream = false, includeUsage = false;
        foreach (var field in body.EnumerateObject())
        {
            var value = field.Value;
            if (value.ValueKind == JsonValueKind.Null) continue;   // null is the default, as in the API
            switch (field.Name)
            {
                case "model": model = String(field); break;
                case "prompt": prompt = PromptText(field); break;
                case "max_tokens": tokens = Integer(field, 0, maxTokens, $"at most the server's cap of {maxTokens}"); break;
                case "temperature": temperature = Number(field, 0, 2); break;
                case "top_p": topP = Number(field, 0, 1); break;
                case "top_k": topK = Integer(field, -1, int.MaxValue, "-1 or 0 for all tokens"); break;
                case "seed": seed = value.TryGetInt64(out var s) ? s : throw Invalid(field, "an integer"); break;
                case "stream": stream = Boolean(field); break;
                case "n": Integer(field, 1, 1, "1 (one completion per request)"); break;
                case "best_of": Integer(field, 1, 1, "1"); break;
                case "echo": if (Boolean(field)) throw Invalid(field, "false (the prompt is not echoed)"); break;
                case "logprobs": throw Invalid(field, "null (log-probabilities are not returned)");
                case "presence_penalty" or "frequency_penalty": if (Number(field, -2, 2) != 0) throw Invalid(field, "0 (penalties are not applied)"); break;
                case "stop": stop = StopSequences(field); break;
                case "stream_options":
                    if (value.ValueKind != JsonValueKind.Object) throw Invalid(field, "an object");
                    includeUsage = value.TryGetProperty("include_usage", out var usage) && usage.ValueKind == JsonValueKind.True;
                    break;
                default:
                    if (!Ignored.Contains(field.Name)) throw new ApiError(400, $"Unrecognized request argument supplied: {field.Name}", field.Name);
                    break;
            }
        }
        if (prompt is null) throw new ApiError(400, "you must provide a prompt", "prompt");
        if (temperature > 0 && temperature < SamplingOptions.MinTemperature) temperature = SamplingOptions.MinTemperature;
        if (topP == 0) topP = double.Epsilon;   // the API's 0: only the most likely token
        var sampling = new SamplingOptions(tokens, temperature, Math.Max(0, topK), seed) { TopP = topP };
        return new CompletionParameters(model, prompt, sampling, stop, stream, includeUsage);
    }

    static ApiError Invalid(JsonProperty field, string expected) => new(400, $"{field.Value.GetRawText()} is not valid for '{field.Name}': expected {expected}", field.Name);

    static string String(JsonProperty field) => field.Value.ValueKind == JsonValueKind.String ? field.Value.GetString()! : throw Invalid(field, "a string");

    static bool Boolean(JsonProperty field) => field.Value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Invalid(field, "a boolean"),
    };

    static int Integer(JsonProperty field, int min, int max, string range) =>
        field.Value.ValueKind == JsonValueKind.Number && field.Value.TryGetInt32(out var n)
            ? n >= min && n <= max ? n : throw Invalid(field, $"an integer from {min}, {range}")
            : throw Invalid(field, "an integer");

    static double Number(JsonProperty field, double min, double max) =>
        field.Value.ValueKind == JsonValueKind.Number && field.Value.TryGetDouble(out var x) && double.IsFinite(x)
            ? x >= min && x <= max ? x : throw Invalid(field, $"a number from {min} to {max}")
            : throw Invalid(field, "a number");

    static string PromptText(JsonProperty field) => field.Value.ValueKind switch
    {
        JsonValueKind.String => field.Value.GetString()!,
        JsonValueKind.Array when field.Value.GetArrayLength() == 1 && field.Value[0].ValueKind == JsonValueKind.String => field.Value[0].GetString()!,
        _ => throw Invalid(field, "a string, or an array of one string"),
    };

    static List<string> StopSequences(JsonProperty field) => field.Value.ValueKind switch
    {
        JsonValueKind.String => [field.Value.GetString()!],
        JsonValueKind.Array when field.Value.GetArrayLength() <= 4 && field.Value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
            [.. field.Value.EnumerateArray().Select(e => e.GetString()!)],
        _ => throw Invalid(field, "a string or an array of at most 4 strings"),
    };
}
