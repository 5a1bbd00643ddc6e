using PeerSharp.Kernels;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>The transformer's ordinary feed-forward: GELU(x W_fc + b) W_proj + b, hidden width m·d_model.</summary>
public sealed class DenseFeedForward : nn.Module<Tensor, Tensor>
{
    // Field names are registered names, so that TorchSharp's field registration does not add them twice.
    [ComponentName(Name = "fc")]
    readonly Linear _fc;
    [ComponentName(Name = "proj")]
    readonly Linear _proj;

    /// <summary>A feed-forward with the given hidden width.</summary>
    public DenseFeedForward(int modelDim, int hiddenDim, string name = "dense") : base(name)
    {
        _fc = nn.Linear(modelDim, hiddenDim);
        _proj = nn.Linear(hiddenDim, modelDim);
        register_module("fc", _fc);
        register_module("proj", _proj);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var hidden = nn.functional.gelu(BatchInvariance.Linear(_fc, x));   // (B, T, hidden)
        return BatchInvariance.Linear(_proj, hidden);                              // (B, T, C)
    }
}
