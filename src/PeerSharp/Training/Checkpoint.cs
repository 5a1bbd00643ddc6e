using System.Security.Cryptography;
using System.Text.Json;
using PeerSharp.Model;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>
/// A checkpoint is three files side by side: NAME.safetensors (the model's state dict, readable by PyTorch's
/// safetensors), NAME.optimizer.safetensors (every optimizer tensor) and NAME.json, the sidecar with the run
/// config, the step, the data position and a SHA-256 of both tensor files. Each file is written to a
/// temporary name and renamed, the sidecar last, so an interrupted save leaves the previous checkpoint whole.
/// </summary>
public sealed record Checkpoint
{
    /// <summary>Format tag of the sidecar.</summary>
    public const string FormatTag = "peersharp-checkpoint-1";

    /// <summary>Sidecar format tag.</summary>
    public string Format { get; init; } = FormatTag;

    /// <summary>The run's full config, model shape included.</summary>
    public required RunConfig Config { get; init; }

    /// <summary>Optimizer steps done; training resumes at this (0-based) step.</summary>
    public required long Step { get; init; }

    /// <summary>Where the data stream stands: the next batch index of the seeded sampler.</summary>
    public required long DataPosition { get; init; }

    /// <summary>Training tokens seen so far.</summary>
    public long TokensSeen { get; init; }

    /// <summary>Last validation loss (nats per token), if any.</summary>
    public double? ValidationLoss { get; init; }

    /// <summary>SHA-256 (hex) of the model and optimizer files, to detect corrupt or truncated copies.</summary>
    public Dictionary<string, string> Sha256 { get; init; } = [];

    /// <summary>The sidecar path of a checkpoint given as NAME, NAME.json or NAME.safetensors.</summary>
    public static string SidecarPath(string path) => BasePath(path) + ".json";

    static string BasePath(string path)
    {
        foreach (var suffix in new[] { ".optimizer.safetensors", ".safetensors", ".json" })
            if (path.EndsWith(suffix, StringComparison.Ordinal)) return path[..^suffix.Length];
        return path;
    }

    static string ModelPath(string basePath) => basePath + ".safetensors";
    static string OptimizerPath(string basePath) => basePath + ".optimizer.safetensors";

    /// <summary>Writes model, optimizer and sidecar atomically; returns the sidecar's path.</summary>
    public static string Save(string path, TransformerLM model, IOptimizer? optimizer, Checkpoint info)
    {
        var basePath = BasePath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(basePath))!);
        var hashes = new Dictionary<string, string>
        {
            [Path.GetFileName(ModelPath(basePath))] = WriteAtomically(ModelPath(basePath), stream => model.save_safetensors(stream, leaveOpen: true)),
        };
        if (optimizer is not null)
            hashes[Path.GetFileName(OptimizerPath(basePath))] = WriteAtomically(OptimizerPath(basePath),
                stream => Safetensors.SaveStateDict(stream, optimizer.StateDict(), leaveOpen: true));
        var sidecar = info with { Sha256 = hashes };
        WriteAtomically(SidecarPath(basePath), stream => JsonSerializer.Serialize(stream, sidecar, RunConfig.Json));
        return SidecarPath(basePath);
    }

    /// <summary>Writes to PATH.tmp, then renames over PATH; returns the SHA-256 of what was written.</summary>
    static string WriteAtomically(string path, Action<Stream> write)
    {
        var temporary = path + ".tmp";
        try
        {
            // FileMode.Create truncates: PyBridge's own SaveStateDict(path) does not, which corrupts an overwrite.
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
                write(stream);
            var hash = Hash(temporary);
            File.Move(temporary, path, overwrite: true);
            return hash;
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    static string Hash(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Reads and checks a sidecar (and the hashes of the files it names).</summary>
    public static Checkpoint Read(string path)
    {
        var sidecar = SidecarPath(path);
        if (!File.Exists(sidecar))
            throw new PeerSharpException($"checkpoint '{sidecar}' does not exist; expected the .json sidecar of a PeerSharp checkpoint");
        Checkpoint? info;
        try { info = JsonSerializer.Deserialize<Checkpoint>(File.ReadAllText(sidecar), RunConfig.Json); }
        catch (JsonException e) { throw new PeerSharpException($"checkpoint sidecar '{sidecar}' is corrupt or truncated ({e.Message})"); }
        if (info is null || info.Format != FormatTag)
            throw new PeerSharpException($"'{sidecar}' is not a PeerSharp checkpoint sidecar; expected format '{FormatTag}'");
        var folder = Path.GetDirectoryName(Path.GetFullPath(sidecar))!;
        foreach (var (file, expected) in info.Sha256)
        {
            var filePath = Path.Combine(folder, file);
            if (!File.Exists(filePath)) throw new PeerSharpException($"checkpoint file '{filePath}' is missing");
            if (Hash(filePath) != expected)
                throw new PeerSharpException($"checkpoint file '{filePath}' is corrupt or truncated: its SHA-256 does not match the sidecar");
        }
        return info;
    }

    /// <summary>Loads the model (and optimizer) state of a checkpoint read with <see cref="Read"/>.</summary>
    public static void Load(string path, TransformerLM model, IOptimizer? optimizer)
    {
        var basePath = BasePath(path);
        try
        {
            model.load_safetensors(ModelPath(basePath), strict: true);
        }
        catch (Exception e) when (e is not PeerSharpException)
        {
            throw new PeerSharpException($"checkpoint '{ModelPath(basePath)}' does not fit the model: {e.Message}");
        }
        if (optimizer is null) return;
        if (!File.Exists(OptimizerPath(basePath)))
            throw new PeerSharpException($"checkpoint '{basePath}' has no optimizer state ({OptimizerPath(basePath)}); cannot resume training from it");
        using var scope = NewDisposeScope();
        var state = Safetensors.LoadStateDict(OptimizerPath(basePath));
        optimizer.LoadStateDict(state);
    }
}
