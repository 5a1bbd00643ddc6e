using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Interop;

/// <summary>
/// The checkpoint format is PyTorch's: a PEER layer computed in plain PyTorch from the documented names of a
/// PeerSharp checkpoint gives PeerSharp's output, and a layer PyTorch code writes loads into PeerSharp and gives
/// PyTorch's output (Interop/peer_torch.py, run with Debian's python3-torch).
/// </summary>
public class PyTorchInteropTests
{
    [PythonTorchFact]
    public void PyTorchComputesThePeerLayerOfAPeerSharpCheckpoint()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        manual_seed(7);
        var config = new RunConfig
        {
            Model = new ModelConfig
            {
                ContextLength = 8, ModelDim = 16, LayerCount = 3, AttentionHeads = 2,
                PeerOptions = new PeerOptions { SubKeyCount = 12, HeadCount = 3, TopK = 4, KeyDim = 8 },
            },
        };
        using var model = new TransformerLM(config.Model);
        var peer = (Peer)model.Blocks[1].FeedForward;
        using (no_grad())
        {
            // Statistics away from their defaults, so that a mix-up of mean, variance, gain and bias would show.
            var state = peer.state_dict();
            state["query_norm.running_mean"].normal_(0, 0.3);
            state["query_norm.running_var"].uniform_(0.3, 1.5);
            state["query_norm.weight"].uniform_(0.5, 1.5);
            state["query_norm.bias"].normal_(0, 0.3);
        }
        var sidecar = Checkpoint.Save(folder.File("checkpoint"), model, null, new Checkpoint { Config = config, Step = 0 });
        var modelFile = Path.Combine(folder.Path, Checkpoint.Read(sidecar).ModelFile!);

        model.eval();
        var x = randn(9, 16);
        var y = peer.forward(x);
        Safetensors.SaveStateDict(folder.File("x.safetensors"), new Dictionary<string, Tensor> { ["x"] = x });

        var (code, _, error) = PythonTorch.Run(PythonTorch.Script, "forward", modelFile, "blocks.1.ffn.", folder.File("x.safetensors"), folder.File("y.safetensors"), "3", "4");
        Assert.True(code == 0, error);
        var expected = Safetensors.LoadStateDict(folder.File("y.safetensors"))["y"];
        Assert.True((y - expected).abs().max().item<float>() < 1e-4, $"PyTorch and PeerSharp differ by {(y - expected).abs().max().item<float>()}");
    }

    [PythonTorchFact]
    public void APeerLayerWrittenByPyTorchLoadsAndComputesTheSame()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var path = folder.File("layer.safetensors");
        var (code, _, error) = PythonTorch.Run(PythonTorch.Script, "write", path, "16", "10", "4", "3", "12", "2024");
        Assert.True(code == 0, error);
        var written = Safetensors.LoadStateDict(path);

        foreach (var kernel in new[] { KernelChoice.Fused, KernelChoice.Plain })
        {
            using var peer = new Peer(16, new PeerOptions { SubKeyCount = 10, HeadCount = 4, TopK = 3, KeyDim = 12, Kernel = kernel });
            var layer = written.Where(p => p.Key is not ("x" or "y")).ToDictionary(p => p.Key, p => p.Value);
            var (missing, unexpected) = peer.load_state_dict(layer, strict: true);
            Assert.Empty(missing);
            Assert.Empty(unexpected);
            peer.eval();
            var y = peer.forward(written["x"]);
            Assert.True((y - written["y"]).abs().max().item<float>() < 1e-4, $"{kernel}: PeerSharp differs from PyTorch by {(y - written["y"]).abs().max().item<float>()}");
        }
    }
}
