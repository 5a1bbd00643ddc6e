using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using PeerSharp.Model;

namespace PeerSharp.Config;

/// <summary>A whole run's settings: the model's shape and how it is trained. The JSON config file format.</summary>
public sealed record RunConfig
{
    /// <summary>The model.</summary>
    public ModelConfig Model { get; init; } = new();

    /// <summary>The training run.</summary>
    public TrainConfig Train { get; init; } = new();

    /// <summary>JSON options shared by config files and checkpoint sidecars.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>Reads a JSON config file; properties it leaves out keep the values of <paramref name="basis"/>.</summary>
    public static RunConfig Load(string path, RunConfig basis)
    {
        if (!File.Exists(path)) throw new PeerSharpException($"config file '{path}' does not exist");
        JsonNode? overlay;
        try
        {
            overlay = JsonNode.Parse(File.ReadAllText(path), documentOptions: new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new PeerSharpException($"config file '{path}' is not valid JSON: {e.Message}");
        }
        if (overlay is not JsonObject settings) throw new PeerSharpException($"config file '{path}' does not hold a JSON object");
        return Overlay(basis, settings, $"config file '{path}'");
    }

    /// <summary>
    /// <paramref name="basis"/> with the properties of <paramref name="overlay"/> (any subset of a config file's
    /// fields, nested objects merged field by field); <paramref name="source"/> names it in errors. With
    /// <paramref name="numbers"/> = <see cref="JsonNumberHandling.AllowNamedFloatingPointLiterals"/> (the command line),
    /// "NaN" and "Infinity" read as numbers, so that validation names such a value as it names any other.
    /// </summary>
    public static RunConfig Overlay(RunConfig basis, JsonObject overlay, string source, JsonNumberHandling numbers = JsonNumberHandling.Strict)
    {
        var options = numbers == JsonNumberHandling.Strict ? Json : new JsonSerializerOptions(Json) { NumberHandling = numbers };
        try
        {
            var merged = JsonSerializer.SerializeToNode(basis, options)!.AsObject();
            Merge(merged, Upgrade((JsonObject)overlay.DeepClone()));
            var config = merged.Deserialize<RunConfig>(options) ?? throw new PeerSharpException($"{source} is empty");
            config.CheckSections(source);
            return config;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new PeerSharpException($"{source} is not a valid PeerSharp config: {e.Message}");
        }
    }

    /// <summary>
    /// The overlay that assignments PATH=VALUE describe (`peer train --set model.peer.topK=32`): PATH names a field
    /// of the config file's format by its JSON names, dot by dot; VALUE is JSON (a number, true, "text", [1, 3]) or,
    /// when it does not parse as JSON, the text itself (so --set model.feedForward=pkm needs no quotes). Later
    /// assignments of the same field win. The overlay is checked as a config file is (<see cref="Overlay"/>).
    /// </summary>
    public static JsonObject Assignments(IEnumerable<string> assignments)
    {
        var overlay = new JsonObject();
        foreach (var assignment in assignments)
        {
            var equals = assignment.IndexOf('=');
            var path = equals < 0 ? "" : assignment[..equals].Trim();
            if (path.Length == 0 || path.Split('.').Any(part => part.Length == 0))
                throw new PeerSharpException($"setting '{assignment}' is not PATH=VALUE; expected a config field's JSON path and a value, like model.peer.topK=32");
            var text = assignment[(equals + 1)..].Trim();
            JsonNode? value;
            try
            {
                value = JsonNode.Parse(text);
            }
            catch (JsonException)
            {
                value = JsonValue.Create(text);
            }
            Assign(overlay, path, value);
        }
        return overlay;
    }

    /// <summary>Sets the field at <paramref name="path"/> (JSON names, dot by dot) of <paramref name="overlay"/>, making the objects on the way.</summary>
    public static void Assign(JsonObject overlay, string path, JsonNode? value)
    {
        var parts = path.Split('.');
        var target = overlay;
        foreach (var part in parts[..^1])
            target = target[part] as JsonObject ?? (JsonObject)(target[part] = new JsonObject());
        target[parts[^1]] = value;
    }

    /// <summary>
    /// A config object written by an earlier PeerSharp, in today's names: "sparseKind" is now "feedForward", and
    /// the computed "expertCount" / "valueCount" of the PEER and PKM settings are no longer written. Config files
    /// and checkpoint sidecars of older runs read through it, so they keep working.
    /// </summary>
    public static JsonObject Upgrade(JsonObject config)
    {
        if (config["model"] is JsonObject model)
        {
            if (model["sparseKind"] is { } kind)
            {
                model.Remove("sparseKind");
                if (!model.ContainsKey("feedForward")) model["feedForward"] = kind.DeepClone();
            }
            (model["peer"] as JsonObject)?.Remove("expertCount");
            (model["pkm"] as JsonObject)?.Remove("valueCount");
        }
        return config;
    }

    /// <summary>
    /// The config of a run that was recorded (a checkpoint sidecar, a sweep result line) in today's names, as
    /// <see cref="Upgrade"/>, and with the settings it ran with where today's default differs: a record without
    /// train.tableState was written before that setting existed, when every table kept full AdamW moments, and one without
    /// model.peer.balance before PEER's joint balance term became the default, so without it. Config files
    /// are not records: a setting they leave out takes today's default.
    /// </summary>
    public static JsonObject UpgradeRecord(JsonObject config)
    {
        Upgrade(config);
        if (config["train"] is JsonObject train && !train.ContainsKey("tableState")) train["tableState"] = "full";
        // PEER's joint balance term became the default later: a record without it was trained without one.
        if (config["model"] is JsonObject model)
        {
            if (model["peer"] is not JsonObject peer) model["peer"] = peer = [];
            if (!peer.ContainsKey("balance")) peer["balance"] = "none";
        }
        return config;
    }

    static void Merge(JsonObject target, JsonObject overlay)
    {
        foreach (var (key, value) in overlay)
        {
            if (value is JsonObject child && target[key] is JsonObject existing)
                Merge(existing, child);
            else
                target[key] = value?.DeepClone();
        }
    }

    /// <summary>The config as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Validates the model and the training settings, and what they ask of each other.</summary>
    public void Validate()
    {
        CheckSections("run config");
        Model.Validate();
        Train.Validate();
        Train.Freeze.Validate(Model);
        if ((long)Train.BatchSize * Model.ContextLength > TrainConfig.MaxTokensPerStep)
            throw new PeerSharpException($"batch size {Train.BatchSize} × context length {Model.ContextLength} is {(long)Train.BatchSize * Model.ContextLength} tokens per step; expected at most {TrainConfig.MaxTokensPerStep}");
        if (Train.EvalTokens < Model.ContextLength)
            throw new PeerSharpException($"eval tokens {Train.EvalTokens} must be at least the context length {Model.ContextLength} (one window)");
        if (Train.UpdateInBackward && (!Model.FeedForwardKinds().Contains(FeedForwardKind.Peer) || Model.PeerOptions.Kernel != Kernels.KernelChoice.Fused))
            throw new PeerSharpException($"updateInBackward needs a PEER block on the fused kernel, but this model's blocks are {string.Join(",", Model.FeedForwardKinds().Select(k => EnumNames.Name(k)))} with the {EnumNames.Name(Model.PeerOptions.Kernel)} PEER kernel; expected a peer block and the fused kernel (or updateInBackward off)");
        if (Model.FeedForwardKinds().Contains(FeedForwardKind.Peer) && Model.PeerOptions.TableStorage == Kernels.ExpertTableStorage.BFloat16 && !Train.UpdateInBackward)
            throw new PeerSharpException("PEER tables stored in bfloat16 (tableStorage: bfloat16) are trained only with the update in the backward; expected updateInBackward: true (--update-in-backward) or float32 tables");
    }

    /// <summary>Throws when a section is null (a config file's "model": null), before anything reads it; <paramref name="source"/> names the file.</summary>
    void CheckSections(string source)
    {
        if (Model is null) throw new PeerSharpException($"{source} sets \"model\" to null; expected an object of model settings");
        if (Train is null) throw new PeerSharpException($"{source} sets \"train\" to null; expected an object of training settings");
        if (Train.Freeze is null) throw new PeerSharpException($"{source} sets \"train.freeze\" to null; expected an object of freezing settings");
        Model.CheckSections(source);
    }
}
