using System.Diagnostics;
using System.Text.Json.Nodes;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Training;

namespace PeerSharp.Tests.Training;

/// <summary>
/// A sidecar is read as hostile: it may only name regular files beside it, must hash the files it loads, and
/// every field must hold what it should. Anything else is one line naming the sidecar and the problem, and
/// nothing outside the checkpoint's folder is touched.
/// </summary>
public class CheckpointSidecarTests : IDisposable
{
    static readonly RunConfig Config = TinyRuns.Config(steps: 3);
    readonly TempFolder _folder = new();
    readonly string _sidecar;
    readonly Checkpoint _saved;

    public CheckpointSidecarTests()
    {
        var (model, optimizer) = TrainingSetup.Create(Config);
        using var _ = model;
        using var __ = optimizer;
        _sidecar = Checkpoint.Save(_folder.File("ckpt"), model, optimizer, new Checkpoint { Config = Config, Step = 3, TokensSeen = 768, ValidationLoss = 5.5 });
        _saved = Checkpoint.Read(_sidecar);
    }

    public void Dispose() => _folder.Dispose();

    [Theory]
    [InlineData("step", "-5", "has step -5; expected a whole number ≥ 0")]
    [InlineData("step", "null", "has step null; expected a whole number ≥ 0")]
    [InlineData("step", null, "has step missing; expected a whole number ≥ 0")]
    [InlineData("step", "\"3\"", "has step \"3\"; expected")]
    [InlineData("step", "1.5", "has step 1.5; expected")]
    [InlineData("tokensSeen", "-768", "has tokensSeen -768; expected a whole number ≥ 0")]
    [InlineData("tokensSeen", "null", "has tokensSeen null")]
    [InlineData("validationLoss", "-1", "has validationLoss -1; expected a number ≥ 0 or null")]
    [InlineData("validationLoss", "\"low\"", "has validationLoss \"low\"")]
    [InlineData("config", "null", "has config null; expected an object")]
    [InlineData("config", null, "has config missing; expected an object")]
    [InlineData("config.model", "null", "has config.model null; expected an object")]
    [InlineData("config.train", null, "has config.train missing; expected an object")]
    [InlineData("config.model.tokenizer", "null", "holds an invalid config: ")]
    [InlineData("config.model.modelDim", "-32", "holds an invalid config: model dim -32 must be between 1 and")]
    [InlineData("config.model.colour", "\"red\"", "holds an invalid config: ")]
    [InlineData("format", "\"peersharp-checkpoint-9\"", "is not a PeerSharp checkpoint sidecar; expected format 'peersharp-checkpoint-2'")]
    [InlineData("format", null, "is not a PeerSharp checkpoint sidecar")]
    [InlineData("dataPosition", "3", "has an unknown field 'dataPosition'")]
    [InlineData("extra", "\"line one\\nline two\"", "has an unknown field 'extra'")]
    [InlineData("sha256", "{}", "gives no SHA-256 for its model file 'ckpt.step-000003.safetensors'; expected one in sha256")]
    [InlineData("sha256", "null", "has sha256 null; expected an object")]
    [InlineData("sha256", null, "has sha256 missing; expected an object")]
    [InlineData("modelFile", "null", "has no modelFile; expected the file name of the model's tensors")]
    [InlineData("modelFile", "42", "has modelFile 42; expected a file name")]
    [InlineData("modelFile", "\"../../etc/passwd\"", "names the file '../../etc/passwd'; expected a plain file name in the sidecar's own folder")]
    [InlineData("modelFile", "\"/etc/shadow\"", "names the file '/etc/shadow'; expected a plain file name")]
    [InlineData("modelFile", "\"/dev/zero\"", "names the file '/dev/zero'; expected a plain file name")]
    [InlineData("modelFile", "\"..\"", "names the file '..'; expected a plain file name")]
    [InlineData("modelFile", "\"ckpt\\nstep.safetensors\"", "names the file 'ckpt step.safetensors'; expected a plain file name")]
    [InlineData("optimizerFile", "\"ckpt.other.safetensors\"", "gives no SHA-256 for its optimizer file 'ckpt.other.safetensors'")]
    public void ABadFieldIsOneLineNamingIt(string field, string? json, string expected)
    {
        CheckpointEdits.Edit(_sidecar, root => Set(root, field, json));
        AssertRefused(expected);
    }

    [Theory]
    [InlineData("../../etc/passwd")]
    [InlineData("/etc/shadow")]
    [InlineData("/dev/zero")]
    [InlineData("sub/ckpt.safetensors")]
    public void ASha256KeyOutsideTheFolderIsRefusedUnread(string key)
    {
        CheckpointEdits.Edit(_sidecar, root => root["sha256"]![key] = new string('0', 64));
        AssertRefused($"names the file '{key}'; expected a plain file name in the sidecar's own folder");
    }

    [Fact]
    public void ASha256ListingAnotherFileBesideItIsRefused()
    {
        _folder.Write("notes.txt", "hello");
        CheckpointEdits.Edit(_sidecar, root => root["sha256"]!["notes.txt"] = CheckpointEdits.Hash(_folder.File("notes.txt")));
        AssertRefused("lists 'notes.txt' in sha256, which is neither its model file nor its optimizer file");
    }

    [Fact]
    public void AMissingModelHashIsRefused()
    {
        CheckpointEdits.Edit(_sidecar, root => root["sha256"]!.AsObject().Remove(_saved.ModelFile!));
        AssertRefused($"gives no SHA-256 for its model file '{_saved.ModelFile}'");
    }

    [Theory]
    [InlineData("ABCDEF")]
    [InlineData("not hex at all, not hex at all, not hex at all, not hex at all!!")]
    public void AHashThatIsNotSha256HexIsRefused(string hash)
    {
        CheckpointEdits.Edit(_sidecar, root => root["sha256"]![_saved.ModelFile!] = hash);
        AssertRefused($"for '{_saved.ModelFile}'; expected 64 lowercase hex digits");
    }

    [Fact]
    public void AWrongHashIsCorrupt()
    {
        CheckpointEdits.Edit(_sidecar, root => root["sha256"]![_saved.ModelFile!] = new string('0', 64));
        var error = Refused(() => Checkpoint.Read(_sidecar));
        Assert.Equal($"checkpoint file '{_folder.File(_saved.ModelFile!)}' is corrupt or truncated: its SHA-256 does not match the sidecar", error.Message);
        Refused(() => Checkpoint.LoadModel(_sidecar));
    }

    [Fact]
    public void AFieldGivenTwiceIsRefused()
    {
        var json = File.ReadAllText(_sidecar);
        File.WriteAllText(_sidecar, json.Replace("\"step\": 3,", "\"step\": 3, \"step\": 0,"));
        AssertRefused("has the field 'step' twice");
    }

    [Fact]
    public void AModelFileThatIsALinkIsRefused()
    {
        var outside = _folder.Write("elsewhere/weights.safetensors", "secret");
        File.Delete(_folder.File(_saved.ModelFile!));
        File.CreateSymbolicLink(_folder.File(_saved.ModelFile!), outside);
        Assert.Equal($"checkpoint file '{_folder.File(_saved.ModelFile!)}' is a symbolic link; expected a regular file", Refused(() => Checkpoint.Read(_sidecar)).Message);
    }

    [Fact]
    public void AModelFileThatIsAFolderIsRefused()
    {
        File.Delete(_folder.File(_saved.ModelFile!));
        Directory.CreateDirectory(_folder.File(_saved.ModelFile!));
        Assert.Equal($"checkpoint file '{_folder.File(_saved.ModelFile!)}' is a folder; expected a regular file", Refused(() => Checkpoint.Read(_sidecar)).Message);
    }

    [Fact]
    public void AModelFileThatIsAPipeIsRefusedWithoutWaiting()
    {
        if (!OperatingSystem.IsLinux()) return;
        File.Delete(_folder.File(_saved.ModelFile!));
        using (var mkfifo = Process.Start("mkfifo", [_folder.File(_saved.ModelFile!)])) mkfifo.WaitForExit();
        Assert.Equal($"checkpoint file '{_folder.File(_saved.ModelFile!)}' is not a regular file (a pipe, socket or device); expected a regular file",
            Refused(() => Checkpoint.Read(_sidecar)).Message);
    }

    [Fact]
    public void AMissingModelFileIsNamed()
    {
        File.Delete(_folder.File(_saved.ModelFile!));
        Assert.Equal($"checkpoint file '{_folder.File(_saved.ModelFile!)}' is missing", Refused(() => Checkpoint.Read(_sidecar)).Message);
    }

    [Fact]
    public void AModelOnlyCheckpointLoadsAModelButCannotResume()
    {
        CheckpointEdits.Edit(_sidecar, root =>
        {
            root["sha256"]!.AsObject().Remove(root["optimizerFile"]!.GetValue<string>());
            root["optimizerFile"] = null;
        });
        var (model, info) = Checkpoint.LoadModel(_sidecar);
        model.Dispose();
        Assert.Null(info.OptimizerFile);
        Assert.Equal($"checkpoint '{_sidecar}' has no optimizer state; cannot resume training from it", Refused(() => TrainingSetup.Resume(_sidecar)).Message);
    }

    [Fact]
    public void ASavedSidecarReadsBackAsWritten()
    {
        Assert.Equal(Checkpoint.FormatTag, _saved.Format);
        Assert.Equal(Config, _saved.Config);
        Assert.Equal((3L, 768L, 5.5), (_saved.Step, _saved.TokensSeen, _saved.ValidationLoss));
        Assert.Equal("ckpt.step-000003.safetensors", _saved.ModelFile);
        Assert.Equal("ckpt.step-000003.optimizer.safetensors", _saved.OptimizerFile);
        Assert.Equal(new[] { _saved.ModelFile, _saved.OptimizerFile }.Order(), _saved.Sha256.Keys.Order());
    }

    /// <summary>Sets (or with a null <paramref name="json"/> removes) a dotted field of the sidecar.</summary>
    static void Set(JsonObject root, string field, string? json)
    {
        var parts = field.Split('.');
        var parent = parts[..^1].Aggregate(root, (node, part) => node[part]!.AsObject());
        if (json is null) parent.Remove(parts[^1]);
        else parent[parts[^1]] = JsonNode.Parse(json);
    }

    /// <summary>Reading and loading both refuse the sidecar with one line that names it and the problem.</summary>
    void AssertRefused(string expected)
    {
        foreach (var attempt in new Action[] { () => Checkpoint.Read(_sidecar), () => TrainingSetup.Resume(_sidecar), () => Checkpoint.LoadModel(_sidecar) })
        {
            var error = Refused(attempt);
            Assert.Contains(expected, error.Message);
            Assert.Contains($"'{_sidecar}'", error.Message);
        }
    }

    /// <summary>The one-line error of <paramref name="attempt"/>, which must come within seconds (a device or pipe read would not).</summary>
    static PeerSharpException Refused(Action attempt)
    {
        var run = Task.Run(() => Record.Exception(attempt));
        Assert.True(run.Wait(TimeSpan.FromSeconds(20)), "reading the checkpoint hangs");
        var error = Assert.IsType<PeerSharpException>(run.Result);
        Assert.DoesNotContain('\n', error.Message);
        return error;
    }
}
