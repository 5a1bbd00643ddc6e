using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;
using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using static TorchSharp.torch;

namespace PeerSharp.Checkpoints;

/// <summary>
/// A checkpoint is a sidecar, NAME.json, holding the run config, the step and a SHA-256 of each tensor file it
/// names: the model's state dict (NAME.step-000123.safetensors, readable by PyTorch's safetensors) and every
/// optimizer tensor (NAME.step-000123.optimizer.safetensors). A save writes new tensor files beside the old
/// ones and syncs them to disk, then writes the sidecar under a temporary name and renames it over NAME.json.
/// That rename is the one commit point: a crash before it leaves the previous checkpoint, a crash after it the
/// new one, each whole. Only then are the files no sidecar names any more deleted. Reading trusts nothing:
/// the sidecar may only name regular files beside it, each file must match its hash, and each tensor file's
/// header must describe exactly the model's (or optimizer's) tensors before anything is allocated for it.
/// </summary>
public sealed record Checkpoint
{
    /// <summary>Format tag of the sidecars written now.</summary>
    public const string FormatTag = "peersharp-checkpoint-2";

    /// <summary>Tag of the first format, whose tensor files were always NAME.safetensors and NAME.optimizer.safetensors.</summary>
    const string FirstFormatTag = "peersharp-checkpoint-1";

    /// <summary>Sidecar format tag.</summary>
    public string Format { get; init; } = FormatTag;

    /// <summary>The run's full config, model shape included.</summary>
    public required RunConfig Config { get; init; }

    /// <summary>Optimizer steps done; training resumes at this (0-based) step, which is also the data position.</summary>
    public required long Step { get; init; }

    /// <summary>Training tokens seen so far.</summary>
    public long TokensSeen { get; init; }

    /// <summary>Last validation loss (nats per token), if any.</summary>
    public double? ValidationLoss { get; init; }

    /// <summary>The model's tensor file, a file name in the sidecar's folder; set by <see cref="Save(string, TransformerLM, IOptimizer?, Checkpoint)"/>.</summary>
    public string? ModelFile { get; init; }

    /// <summary>The optimizer's tensor file, a file name in the sidecar's folder; null when no optimizer was saved.</summary>
    public string? OptimizerFile { get; init; }

    /// <summary>SHA-256 (hex) of the model and optimizer files, to detect corrupt or truncated copies.</summary>
    public Dictionary<string, string> Sha256 { get; init; } = [];

    /// <summary>The checkpoint path of a run folder (FOLDER/checkpoint → checkpoint.json and its tensor files).</summary>
    public static string PathInFolder(string folder) => Path.Combine(folder, "checkpoint");

    /// <summary>The sidecar path of a checkpoint given as NAME, NAME.json or NAME.safetensors.</summary>
    public static string SidecarPath(string path) => BasePath(path) + ".json";

    static string BasePath(string path)
    {
        foreach (var suffix in new[] { ".optimizer.safetensors", ".safetensors", ".json" })
            if (path.EndsWith(suffix, StringComparison.Ordinal)) return path[..^suffix.Length];
        return path;
    }

    /// <summary>
    /// Writes model, optimizer and sidecar so that the previous checkpoint or this one is whole at every instant;
    /// returns the sidecar's path. A file-system failure (a full disk, say) leaves the previous checkpoint as it
    /// was and throws a <see cref="PeerSharpException"/>.
    /// </summary>
    public static string Save(string path, TransformerLM model, IOptimizer? optimizer, Checkpoint info) =>
        Save(path, model, optimizer, info, CheckpointFiles.Durable);

    /// <summary><see cref="Save(string, TransformerLM, IOptimizer?, Checkpoint)"/> through the given file operations.</summary>
    internal static string Save(string path, TransformerLM model, IOptimizer? optimizer, Checkpoint info, CheckpointFiles files) =>
        Save(path, model, optimizer, info, files, null, null);

    /// <summary>
    /// <see cref="Save(string, TransformerLM, IOptimizer?, Checkpoint)"/>, where the model's tensors named in
    /// <paramref name="drawn"/> are drawn slice by slice as they are written instead of read (FreshCheckpoint), with
    /// the bytes of model tensors written so far reported to <paramref name="progress"/>.
    /// </summary>
    internal static string Save(string path, TransformerLM model, IOptimizer? optimizer, Checkpoint info, CheckpointFiles files,
                                IReadOnlyDictionary<string, Action<Tensor>>? drawn, IProgress<long>? progress)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(info.Step);
        ArgumentOutOfRangeException.ThrowIfNegative(info.TokensSeen);
        var sidecarPath = SidecarPath(path);
        var basePath = Path.GetFullPath(BasePath(path));
        var (folder, name) = (Path.GetDirectoryName(basePath)!, Path.GetFileName(basePath));
        var temporary = basePath + ".json.tmp";
        var written = new List<string>();
        Checkpoint sidecar;
        try
        {
            Directory.CreateDirectory(folder);
            var tag = UnusedTag(folder, name, info.Step);
            var modelFile = $"{name}.{tag}.safetensors";
            var hashes = new Dictionary<string, string> { [modelFile] = WriteTensors(files, Path.Combine(folder, modelFile), ModelTensors(model), written, drawn, progress) };
            string? optimizerFile = null;
            if (optimizer is not null)
            {
                optimizerFile = $"{name}.{tag}.optimizer.safetensors";
                hashes[optimizerFile] = WriteTensors(files, Path.Combine(folder, optimizerFile), [.. optimizer.StateDict()], written);
            }
            // The tensor files' names reach the disk before any sidecar that names them.
            files.SyncFolder(folder);
            sidecar = info with { Format = FormatTag, ModelFile = modelFile, OptimizerFile = optimizerFile, Sha256 = hashes };
            files.Delete(temporary);                 // left by a save that was interrupted
            written.Add(temporary);
            files.Write(temporary, stream => JsonSerializer.Serialize(stream, sidecar, RunConfig.Json));
            files.Replace(temporary, sidecarPath);   // the commit
        }
        catch (Exception e)
        {
            foreach (var file in written) DeleteIfPossible(files, file);
            if (e is IOException or UnauthorizedAccessException) throw WriteFailure(sidecarPath, e);
            throw;
        }
        try
        {
            // The commit reaches the disk before the previous checkpoint's files go.
            files.SyncFolder(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw WriteFailure(sidecarPath, e);
        }
        var own = OwnFile(name);
        foreach (var stale in Directory.EnumerateFiles(folder).Select(file => Path.GetFileName(file)))
            if (own.IsMatch(stale) && stale != sidecar.ModelFile && stale != sidecar.OptimizerFile)
                DeleteIfPossible(files, Path.Combine(folder, stale));
        return sidecarPath;
    }

    /// <summary>"step-000123", or "step-000123-2"… when files of that name exist (a save of the same step).</summary>
    static string UnusedTag(string folder, string name, long step)
    {
        var tag = $"step-{step:D6}";
        for (var n = 2; File.Exists(Path.Combine(folder, $"{name}.{tag}.safetensors")) || File.Exists(Path.Combine(folder, $"{name}.{tag}.optimizer.safetensors")); n++)
            tag = $"step-{step:D6}-{n}";
        return tag;
    }

    /// <summary>The files of checkpoint NAME that a sidecar names or a save leaves behind, in both formats.</summary>
    static Regex OwnFile(string name) =>
        new($@"^{Regex.Escape(name)}\.(step-\d+(-\d+)?\.(optimizer\.)?safetensors|(optimizer\.)?safetensors(\.tmp)?|json\.tmp)$");

    /// <summary>Writes a safetensors file and returns its SHA-256, hashed as it is written.</summary>
    static string WriteTensors(CheckpointFiles files, string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors, List<string> written,
                               IReadOnlyDictionary<string, Action<Tensor>>? drawn = null, IProgress<long>? progress = null)
    {
        written.Add(path);
        using var sha = SHA256.Create();
        files.Write(path, stream =>
        {
            using var hashing = new CryptoStream(stream, sha, CryptoStreamMode.Write, leaveOpen: true);
            SafetensorsFile.Write(hashing, tensors, drawn, progress);
        });
        return Convert.ToHexStringLower(sha.Hash!);
    }

    /// <summary>A file that cannot be deleted now stays behind harmlessly: no sidecar names it, and the next save deletes it.</summary>
    static void DeleteIfPossible(CheckpointFiles files, string path)
    {
        try { files.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>
    /// The model's state dict with each tensor once. TorchSharp registers a module's fields as well as the names
    /// it is given, so the state dict can list a tensor two to four times ("blocks.1.ffn._down.weight" and
    /// "blocks.1.&lt;FeedForward&gt;k__BackingField.down.weight" beside "blocks.1.ffn.down.weight"); the name
    /// that is no such alias is kept. Loading one name fills them all: they are the same tensor.
    /// </summary>
    static List<KeyValuePair<string, Tensor>> ModelTensors(TransformerLM model)
    {
        var kept = new Dictionary<IntPtr, KeyValuePair<string, Tensor>>();
        foreach (var entry in model.state_dict())
            if (!kept.TryGetValue(entry.Value.Handle, out var previous) || (IsAlias(previous.Key) && !IsAlias(entry.Key)))
                kept[entry.Value.Handle] = entry;
        return [.. kept.Values];
    }

    /// <summary>Whether a state-dict name goes through a registered field (a segment like "_down" or "&lt;FeedForward&gt;k__BackingField").</summary>
    static bool IsAlias(string name) => name.Split('.').Any(segment => segment.StartsWith('_') || segment.Contains("k__BackingField", StringComparison.Ordinal));

    /// <summary>Reads and checks a sidecar, and the hashes of the files it names.</summary>
    public static Checkpoint Read(string path) => Read(path, CheckpointFiles.Durable);

    /// <summary><see cref="Read(string)"/>, opening the files through <paramref name="files"/>.</summary>
    internal static Checkpoint Read(string path, CheckpointFiles files)
    {
        using var opened = OpenedFiles.Open(path, files);
        foreach (var (file, hash) in opened.Info.Sha256)
            Reading(opened.PathOf(file), () => CheckHash(opened[file], opened.PathOf(file), hash));
        return opened.Info;
    }

    /// <summary>Reads and checks a sidecar without hashing the files it names (a mapped load checks their headers instead).</summary>
    internal static Checkpoint ReadWithoutHashes(string path) => ReadSidecar(SidecarPath(path));

    /// <summary>
    /// Loads the model (and optimizer) state of a checkpoint and returns its sidecar. Each file is hashed and
    /// its header checked against the model (or optimizer) before its tensors are read, through the same open
    /// handle, so what is loaded is what was checked.
    /// </summary>
    public static Checkpoint Load(string path, TransformerLM model, IOptimizer? optimizer)
    {
        using var opened = OpenedFiles.Open(path, CheckpointFiles.Durable);
        var info = opened.Info;
        if (optimizer is not null && info.OptimizerFile is null)
            throw new PeerSharpException($"checkpoint '{opened.Sidecar}' has no optimizer state; cannot resume training from it");
        LoadTensors(opened, info.ModelFile!, ModelTensors(model).ToDictionary(), "model");
        if (optimizer is null) return info;
        // Filled in place, then handed back: LoadStateDict copies each entry to wherever the optimizer keeps it
        // (each part of a composite optimizer has its own "step"), and when StateDict returns the live tensors,
        // as AdamW's does, no second copy of the optimizer state is allocated.
        var state = optimizer.StateDict();
        LoadTensors(opened, info.OptimizerFile!, state, "optimizer");
        optimizer.LoadStateDict(state);
        return info;
    }

    /// <summary>A model restored from a checkpoint, in evaluation mode.</summary>
    public static (TransformerLM Model, Checkpoint Info) LoadModel(string checkpointPath) => LoadModel(checkpointPath, mapTables: false);

    /// <summary>
    /// A model restored from a checkpoint, in evaluation mode; with <paramref name="mapTables"/> its expert tables
    /// are memory-mapped read-only from the checkpoint (<see cref="LoadForInference"/>), never
    /// allocated, and the model cannot be trained.
    /// </summary>
    public static (TransformerLM Model, Checkpoint Info) LoadModel(string checkpointPath, bool mapTables)
    {
        var info = mapTables ? Checkpoint.ReadWithoutHashes(checkpointPath) : Checkpoint.Read(checkpointPath);
        if (!mapTables) info.Config.Model.CheckFitsInMemory(training: false);
        TransformerLM model;
        using (mapTables ? TableInit.Defer() : null) model = new TransformerLM(info.Config.Model);
        try
        {
            info = Checkpoint.LoadForInference(checkpointPath, model, mapTables);   // a save since the read above moved it on
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return (model, info);
    }

    /// <summary>
    /// Loads a checkpoint's model state for inference and returns its sidecar. With <paramref name="mapTables"/>
    /// the expert tables (PEER's down.weight and up.weight, PKM's values.weight) are not read but mapped
    /// read-only from the model file (DESIGN.md "Memory-mapped tables"), so memory holds only the rows tokens
    /// touch. The file's SHA-256 is then not checked, since hashing would read every page of the tables; the
    /// header, every tensor's dtype, shape and byte range, and the file's size are checked as always. Such a
    /// model cannot be trained: <see cref="OptimizerFactory.Create"/> and the trainer refuse it.
    /// Without <paramref name="mapTables"/> this is <see cref="Load"/> without an optimizer.
    /// </summary>
    public static Checkpoint LoadForInference(string path, TransformerLM model, bool mapTables)
    {
        if (!mapTables) return Load(path, model, null);
        using var opened = OpenedFiles.Open(path, CheckpointFiles.Durable);
        var (file, handle) = (opened.PathOf(opened.Info.ModelFile!), opened[opened.Info.ModelFile!]);
        var destinations = ModelTensors(model).ToDictionary();
        var tables = MappedTables.TableNames(model);
        Reading(file, () =>
        {
            var tensors = SafetensorsFile.Open(handle, file);
            tensors.CheckFits(destinations, "model", IsAlias);
            tensors.ReadInto(destinations.Where(d => !tables.Contains(d.Key)).ToDictionary());
            MappedTables.Map(model, handle, file, tensors);
        });
        return opened.Info;
    }

    static void LoadTensors(OpenedFiles opened, string file, IReadOnlyDictionary<string, Tensor> destinations, string owner)
    {
        var (path, handle) = (opened.PathOf(file), opened[file]);
        Reading(path, () =>
        {
            CheckHash(handle, path, opened.Info.Sha256[file]);
            var tensors = SafetensorsFile.Open(handle, path);
            tensors.CheckFits(destinations, owner, IsAlias);
            tensors.ReadInto(destinations);
        });
    }

    static void Reading(string path, Action read) => Reading(path, () => { read(); return 0; });

    static T Reading<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PeerSharpException($"could not read checkpoint file '{path}': {e.Message}", e);
        }
    }

    /// <summary>
    /// A sidecar and the tensor files it names, opened together, so that the handles are of the files that sidecar
    /// names. A save that commits a newer checkpoint between the reading of the sidecar and the opening of its files
    /// deletes those files (a training that saves every few steps while `peer eval` reads it): the sidecar has changed
    /// by then, so it is read again, up to <see cref="Attempts"/> times. A file missing under an unchanged sidecar is
    /// an error. Once open, a handle reads its file whole even when a later save deletes it.
    /// </summary>
    sealed class OpenedFiles : IDisposable
    {
        const int Attempts = 10;
        readonly Dictionary<string, SafeFileHandle> _handles;

        OpenedFiles(string sidecar, Checkpoint info, Dictionary<string, SafeFileHandle> handles) => (Sidecar, Info, _handles) = (sidecar, info, handles);

        public string Sidecar { get; }

        public Checkpoint Info { get; }

        /// <summary>The open handle of one of the files <see cref="Info"/> names.</summary>
        public SafeFileHandle this[string file] => _handles[file];

        public string PathOf(string file) => Path.Combine(Folder(Sidecar), file);

        public static OpenedFiles Open(string path, CheckpointFiles files)
        {
            var sidecar = SidecarPath(path);
            for (var attempt = 1; ; attempt++)
            {
                var text = ReadSidecarText(sidecar);
                var info = ParseSidecar(sidecar, text);
                var handles = new Dictionary<string, SafeFileHandle>();
                try
                {
                    foreach (var file in info.Sha256.Keys)
                    {
                        var filePath = Path.Combine(Folder(sidecar), file);
                        handles[file] = Reading(filePath, () => files.OpenRegularFile(filePath));
                    }
                    return new OpenedFiles(sidecar, info, handles);
                }
                catch (Exception e)
                {
                    foreach (var handle in handles.Values) handle.Dispose();
                    if (e is PeerSharpException && attempt < Attempts && Changed(sidecar, text)) continue;
                    throw;
                }
            }
        }

        /// <summary>Whether the sidecar no longer holds <paramref name="text"/> (a save committed since).</summary>
        static bool Changed(string sidecar, string text)
        {
            try { return ReadSidecarText(sidecar) != text; }
            catch (PeerSharpException) { return false; }
        }

        public void Dispose()
        {
            foreach (var handle in _handles.Values) handle.Dispose();
        }
    }

    static void CheckHash(SafeFileHandle file, string path, string expected)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        long offset = 0;
        for (int read; (read = RandomAccess.Read(file, buffer, offset)) > 0; offset += read)
            sha.AppendData(buffer, 0, read);
        if (Convert.ToHexStringLower(sha.GetHashAndReset()) != expected)
            throw new PeerSharpException($"checkpoint file '{path}' is corrupt or truncated: its SHA-256 does not match the sidecar");
    }

    static string Folder(string sidecar) => Path.GetDirectoryName(Path.GetFullPath(sidecar))!;

    /// <summary>The step in the name of a tensor file of the current format ("NAME.step-000123-2.optimizer.safetensors": 123).</summary>
    static readonly Regex StepOfFile = new(@"\.step-(?<step>[0-9]+)(-[0-9]+)?\.(optimizer\.)?safetensors$", RegexOptions.CultureInvariant);

    /// <summary>The sidecar's own fields, in the order they are written.</summary>
    static readonly string[] Fields = ["format", "config", "step", "tokensSeen", "validationLoss", "modelFile", "optimizerFile", "sha256"];

    /// <summary>The options of config files, except that a null where a value belongs is refused, not kept.</summary>
    static readonly JsonSerializerOptions ConfigJson = new(RunConfig.Json) { RespectNullableAnnotations = true };

    /// <summary>A save that failed: one line, with what to do when the disk is full.</summary>
    static PeerSharpException WriteFailure(string sidecarPath, Exception e) =>
        new($"could not write checkpoint '{sidecarPath}': {PeerSharpException.DiskFull(e) ?? e.Message}", e);

    /// <summary>Reads a sidecar, checking every field; throws a <see cref="PeerSharpException"/> naming the first that is wrong.</summary>
    static Checkpoint ReadSidecar(string sidecar) => ParseSidecar(sidecar, ReadSidecarText(sidecar));

    /// <summary>The text of a sidecar, which must be a regular file (a pipe would block the read).</summary>
    static string ReadSidecarText(string sidecar)
    {
        if (!File.Exists(sidecar))
            throw new PeerSharpException($"checkpoint '{sidecar}' does not exist; expected the .json sidecar of a PeerSharp checkpoint");
        try
        {
            if (!FileTypes.IsRegularFile(sidecar, followLinks: true))
                throw new PeerSharpException($"checkpoint '{sidecar}' is not a regular file (a pipe, socket or device); expected the .json sidecar of a PeerSharp checkpoint");
            return File.ReadAllText(sidecar);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PeerSharpException($"could not read checkpoint '{sidecar}': {e.Message}", e);
        }
    }

    /// <summary>Checks every field of a sidecar's <paramref name="text"/>; throws a <see cref="PeerSharpException"/> naming the first that is wrong.</summary>
    static Checkpoint ParseSidecar(string sidecar, string text)
    {
        JsonDocument document;
        try { document = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new PeerSharpException($"checkpoint sidecar '{sidecar}' is corrupt or truncated ({e.Message})"); }
        using var _ = document;
        var root = document.RootElement;
        PeerSharpException Invalid(string problem) => new($"checkpoint sidecar '{sidecar}' {problem}");

        var format = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("format", out var tag) && tag.ValueKind == JsonValueKind.String ? tag.GetString() : null;
        if (format is not (FormatTag or FirstFormatTag))
            throw new PeerSharpException($"'{sidecar}' is not a PeerSharp checkpoint sidecar; expected format '{FormatTag}'");
        var seen = new HashSet<string>();
        foreach (var property in root.EnumerateObject())
        {
            if (!seen.Add(property.Name)) throw Invalid($"has the field '{SafetensorsFile.Printable(property.Name)}' twice");
            // The first format also stored the data position, which always equalled the step.
            if (!Fields.Contains(property.Name) && !(format == FirstFormatTag && property.Name == "dataPosition"))
                throw Invalid($"has an unknown field '{SafetensorsFile.Printable(property.Name)}'; expected only {string.Join(", ", Fields)}");
        }

        string Raw(JsonElement json, string field) => json.TryGetProperty(field, out var value) ? SafetensorsFile.Printable(value.GetRawText()) : "missing";
        long WholeNumber(string field) =>
            root.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) && number >= 0
                ? number
                : throw Invalid($"has {field} {Raw(root, field)}; expected a whole number ≥ 0");
        var step = WholeNumber("step");
        var tokensSeen = WholeNumber("tokensSeen");
        double? validationLoss = null;
        if (root.TryGetProperty("validationLoss", out var loss) && loss.ValueKind != JsonValueKind.Null)
            validationLoss = loss.ValueKind == JsonValueKind.Number && loss.TryGetDouble(out var value) && value >= 0
                ? value
                : throw Invalid($"has validationLoss {Raw(root, "validationLoss")}; expected a number ≥ 0 or null");

        if (!root.TryGetProperty("config", out var configJson) || configJson.ValueKind != JsonValueKind.Object)
            throw Invalid($"has config {Raw(root, "config")}; expected an object with the model and train settings");
        foreach (var part in new[] { "model", "train" })
            if (!configJson.TryGetProperty(part, out var value) || value.ValueKind != JsonValueKind.Object)
                throw Invalid($"has config.{part} {Raw(configJson, part)}; expected an object");
        RunConfig config;
        try
        {
            // Sidecars of earlier versions name some settings differently or lack some (RunConfig.UpgradeRecord).
            config = RunConfig.UpgradeRecord(JsonNode.Parse(configJson.GetRawText())!.AsObject()).Deserialize<RunConfig>(ConfigJson)!;
            config.Validate();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or PeerSharpException)
        {
            throw Invalid($"holds an invalid config: {e.Message}");
        }

        string PlainFileName(string name) =>
            FileNames.IsPlain(name)
                ? name
                : throw Invalid($"names the file '{SafetensorsFile.Printable(name)}'; expected a plain file name in the sidecar's own folder");
        if (!root.TryGetProperty("sha256", out var hashJson) || hashJson.ValueKind != JsonValueKind.Object)
            throw Invalid($"has sha256 {Raw(root, "sha256")}; expected an object giving the SHA-256 of each tensor file");
        var hashes = new Dictionary<string, string>();
        foreach (var entry in hashJson.EnumerateObject())
        {
            var file = PlainFileName(entry.Name);
            if (entry.Value.ValueKind != JsonValueKind.String || !Regex.IsMatch(entry.Value.GetString()!, "^[0-9a-f]{64}$"))
                throw Invalid($"has the SHA-256 {SafetensorsFile.Printable(entry.Value.GetRawText())} for '{file}'; expected 64 lowercase hex digits");
            if (!hashes.TryAdd(file, entry.Value.GetString()!)) throw Invalid($"lists '{file}' twice in sha256");
        }

        string modelFile;
        string? optimizerFile;
        if (format == FirstFormatTag)
        {
            var name = Path.GetFileName(BasePath(sidecar));
            modelFile = $"{name}.safetensors";
            optimizerFile = hashes.ContainsKey($"{name}.optimizer.safetensors") ? $"{name}.optimizer.safetensors" : null;
        }
        else
        {
            string? FileName(string field) =>
                !root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null ? null
                : value.ValueKind == JsonValueKind.String ? PlainFileName(value.GetString()!)
                : throw Invalid($"has {field} {Raw(root, field)}; expected a file name");
            modelFile = FileName("modelFile") ?? throw Invalid("has no modelFile; expected the file name of the model's tensors");
            optimizerFile = FileName("optimizerFile");
        }
        if (!hashes.ContainsKey(modelFile))
            throw Invalid($"gives no SHA-256 for its model file '{modelFile}'; expected one in sha256");
        if (optimizerFile is not null && !hashes.ContainsKey(optimizerFile))
            throw Invalid($"gives no SHA-256 for its optimizer file '{optimizerFile}'; expected one in sha256");
        foreach (var file in hashes.Keys)
            if (file != modelFile && file != optimizerFile)
                throw Invalid($"lists '{file}' in sha256, which is neither its model file nor its optimizer file");
        // A save names its files after its step: a step that is not theirs was edited, and would resume elsewhere.
        if (format == FormatTag)
            foreach (var file in hashes.Keys)
                if (StepOfFile.Match(file) is not { Success: true } stepTag || !long.TryParse(stepTag.Groups["step"].ValueSpan, out var fileStep) || fileStep != step)
                    throw Invalid($"has step {step}, but its file '{file}' was not written at that step; expected the files a save of step {step} writes (NAME.step-{step:D6}.safetensors)");

        return new Checkpoint
        {
            Format = format, Config = config, Step = step, TokensSeen = tokensSeen, ValidationLoss = validationLoss,
            ModelFile = modelFile, OptimizerFile = optimizerFile, Sha256 = hashes,
        };
    }
}
