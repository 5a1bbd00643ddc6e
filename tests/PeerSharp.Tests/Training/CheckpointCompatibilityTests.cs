using System.Buffers.Binary;
using System.Text;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>
/// Checkpoints of the first format, and files that hold each tensor under its alias names too (as the model's
/// state dict did), still load; the files written now hold each tensor once, readable by PyBridge.
/// </summary>
public class CheckpointCompatibilityTests : IDisposable
{
    static readonly RunConfig Config = TinyRuns.Config(steps: 3);
    readonly TempFolder _folder = new();
    readonly TransformerLM _model;
    readonly IOptimizer _optimizer;

    public CheckpointCompatibilityTests()
    {
        (_model, _optimizer) = TrainingSetup.Create(Config);
        // Weights unlike a fresh model's and optimizer state unlike zeros, so loading them is seen.
        using var _ = no_grad();
        foreach (var parameter in _model.parameters()) parameter.add_(randn_like(parameter));
        foreach (var tensor in _optimizer.StateDict().Values) tensor.add_(1);
    }

    public void Dispose()
    {
        _model.Dispose();
        _optimizer.Dispose();
        _folder.Dispose();
    }

    [Fact]
    public void AFirstFormatCheckpointLoadsBitExactly()
    {
        var path = _folder.File("old");
        CheckpointEdits.SaveInFirstFormat(path, _model, _optimizer, new Checkpoint { Config = Config, Step = 7, TokensSeen = 1792, ValidationLoss = 4.25 });

        var (model, optimizer, info) = TrainingSetup.Resume(path + ".json");
        using var _ = model;
        using var __ = optimizer;
        Assert.Equal("peersharp-checkpoint-1", info.Format);
        Assert.Equal((7L, 1792L, 4.25), (info.Step, info.TokensSeen, info.ValidationLoss));
        Assert.Equal(("old.safetensors", "old.optimizer.safetensors"), (info.ModelFile, info.OptimizerFile));
        CheckpointTests.AssertSameTensors(_model.state_dict(), model.state_dict());
        CheckpointTests.AssertSameTensors(_optimizer.StateDict(), optimizer.StateDict());
    }

    [Fact]
    public void TheNextSaveReplacesAFirstFormatCheckpoint()
    {
        var path = _folder.File("old");
        CheckpointEdits.SaveInFirstFormat(path, _model, _optimizer, new Checkpoint { Config = Config, Step = 7 });
        Checkpoint.Save(path, _model, _optimizer, new Checkpoint { Config = Config, Step = 8 });
        Assert.Equal(["old.json", "old.step-000008.optimizer.safetensors", "old.step-000008.safetensors"],
            Directory.GetFiles(_folder.Path).Select(f => Path.GetFileName(f)).Order());
        Assert.Equal(8, Checkpoint.Read(path).Step);
    }

    [Fact]
    public void SavedFilesHoldEachTensorOnceByItsCleanName()
    {
        var info = Checkpoint.Read(Checkpoint.Save(_folder.File("ckpt"), _model, _optimizer, new Checkpoint { Config = Config, Step = 3 }));
        var saved = Safetensors.LoadStateDict(_folder.File(info.ModelFile!));
        var state = _model.state_dict();
        Assert.Equal(state.Keys.Where(k => !IsAlias(k)).Order(), saved.Keys.Order());
        CheckpointTests.AssertSameTensors(saved, saved.Keys.ToDictionary(k => k, k => state[k]));
        Assert.DoesNotContain(state.Keys, IsAlias);   // the modules register each tensor once (StateDictNamesTests)
    }

    [Theory]
    [InlineData("blocks.0.ffn._x.weight", "blocks.0.ffn.down.weight")]
    [InlineData("blocks.0._feedForwardNorm.weight", "blocks.0.ln_ffn.weight")]
    [InlineData("blocks.0.<FeedForward>k__BackingField.down.weight", "blocks.0.ffn.down.weight")]
    public void AFileWithAliasesOfItsTensorsLoads(string alias, string of)
    {
        var sidecar = WithExtraTensor(alias, state => state[of].clone());
        var (model, optimizer, _) = TrainingSetup.Resume(sidecar);
        using var __ = model;
        using var ___ = optimizer;
        CheckpointTests.AssertSameTensors(_model.state_dict(), model.state_dict());
    }

    [Theory]
    [InlineData("blocks.0.ffn.extra.weight", "holds tensor 'blocks.0.ffn.extra.weight', which the model does not have")]
    [InlineData("blocks.0.ffn._x.weight", "holds tensor 'blocks.0.ffn._x.weight', which the model does not have")]
    public void AFileWithOtherTensorsIsRefused(string name, string expected)
    {
        // A name that is no alias, and an alias that has the shape of no model tensor.
        var sidecar = WithExtraTensor(name, _ => zeros(7, 7));
        var error = Assert.Throws<PeerSharpException>(() => TrainingSetup.Resume(sidecar));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void AHostileModelFileWithMatchingHashesIsRefusedByItsHeader()
    {
        var sidecar = Checkpoint.Save(_folder.File("ckpt"), _model, _optimizer, new Checkpoint { Config = Config, Step = 3 });
        var modelFile = _folder.File(Checkpoint.Read(sidecar).ModelFile!);
        const long elements = 100_000L * 100_000;
        var header = Encoding.UTF8.GetBytes("""{"tok_emb.weight":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,END]}}""".Replace("END", $"{elements * 4}"));
        var bytes = new byte[8 + header.Length + 64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        File.WriteAllBytes(modelFile, bytes);
        CheckpointEdits.Rehash(sidecar);

        var error = Assert.Throws<PeerSharpException>(() => Checkpoint.LoadModel(sidecar));
        Assert.Equal($"tensor 'tok_emb.weight' in '{modelFile}' ends at byte 40000000000 of the data, past its end at 64; the file is truncated or corrupt", error.Message);
    }

    /// <summary>A checkpoint whose model file holds one more tensor, made from the saved state, with matching hashes.</summary>
    string WithExtraTensor(string name, Func<Dictionary<string, Tensor>, Tensor> make)
    {
        var sidecar = Checkpoint.Save(_folder.File("ckpt"), _model, _optimizer, new Checkpoint { Config = Config, Step = 3 });
        var modelFile = _folder.File(Checkpoint.Read(sidecar).ModelFile!);
        var state = Safetensors.LoadStateDict(modelFile);
        state[name] = make(state);
        File.Delete(modelFile);
        Safetensors.SaveStateDict(modelFile, state);
        CheckpointEdits.Rehash(sidecar);
        return sidecar;
    }

    static bool IsAlias(string name) => name.Split('.').Any(s => s.StartsWith('_') || s.Contains("k__BackingField"));
}
