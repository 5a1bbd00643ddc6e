using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using TorchSharp.PyBridge;

namespace PeerSharp.Tests.Training;

/// <summary>Checkpoints as other programs (or attackers, or the first format) leave them.</summary>
static class CheckpointEdits
{
    /// <summary>
    /// Saves as the first format did: PyBridge files of fixed names (NAME.safetensors with every alias of the
    /// state dict, NAME.optimizer.safetensors) and a sidecar with their hashes and the data position.
    /// </summary>
    public static void SaveInFirstFormat(string path, TransformerLM model, IOptimizer optimizer, Checkpoint info)
    {
        using (var stream = File.Create(path + ".safetensors")) model.save_safetensors(stream, leaveOpen: true);
        using (var stream = File.Create(path + ".optimizer.safetensors")) Safetensors.SaveStateDict(stream, optimizer.StateDict(), leaveOpen: true);
        var name = Path.GetFileName(path);
        var sidecar = new JsonObject
        {
            ["format"] = "peersharp-checkpoint-1",
            ["config"] = JsonSerializer.SerializeToNode(info.Config, RunConfig.Json),
            ["step"] = info.Step,
            ["dataPosition"] = info.Step,
            ["tokensSeen"] = info.TokensSeen,
            ["validationLoss"] = info.ValidationLoss,
            ["sha256"] = new JsonObject
            {
                [$"{name}.safetensors"] = Hash(path + ".safetensors"),
                [$"{name}.optimizer.safetensors"] = Hash(path + ".optimizer.safetensors"),
            },
        };
        File.WriteAllText(path + ".json", sidecar.ToJsonString(RunConfig.Json));
    }

    /// <summary>Rewrites a sidecar with <paramref name="change"/> applied to its JSON.</summary>
    public static void Edit(string sidecar, Action<JsonObject> change)
    {
        var json = JsonNode.Parse(File.ReadAllText(sidecar))!.AsObject();
        change(json);
        File.WriteAllText(sidecar, json.ToJsonString());
    }

    /// <summary>Makes the sidecar's hashes match its files again, as a careful attacker would.</summary>
    public static void Rehash(string sidecar) => Edit(sidecar, json =>
    {
        var hashes = json["sha256"]!.AsObject();
        foreach (var name in hashes.Select(h => h.Key).ToList())
            hashes[name] = Hash(Path.Combine(Path.GetDirectoryName(sidecar)!, name));
    });

    public static string Hash(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
}
