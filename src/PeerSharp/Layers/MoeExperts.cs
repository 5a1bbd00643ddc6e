using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// The E experts of a mixture-of-experts layer: independent GELU feed-forwards the size of the dense one,
/// GELU(x W1_e + b1_e) W2_e + b2_e. The router gathers each expert's tokens into one [E, C, d_model] tensor and
/// each layer of all experts is one batched matrix product, so no C# loop runs over tokens or experts.
/// The weights are stored as the experts' nn.Linear weights stacked row-wise ([E·H, d_model] and
/// [E·d_model, H]), so every expert matrix is a 2-D weight to the optimizer, like the dense FFW's.
/// </summary>
public sealed class MoeExperts : nn.Module<Tensor, Tensor>
{
    // Named for module.to(...), which re-assigns a converted parameter only to the field of its registered name.
    [ComponentName(Name = "fc_weight")]
    readonly Parameter _fcWeight;     // [E·H, d]: expert e's first layer is rows [e·H, (e+1)·H)
    [ComponentName(Name = "fc_bias")]
    readonly Parameter _fcBias;       // [E·H]
    [ComponentName(Name = "proj_weight")]
    readonly Parameter _projWeight;   // [E·d, H]: expert e's second layer is rows [e·d, (e+1)·d)
    [ComponentName(Name = "proj_bias")]
    readonly Parameter _projBias;     // [E·d]

    /// <summary>E freshly initialised experts of hidden width H.</summary>
    public MoeExperts(int expertCount, int modelDim, int hiddenDim, string name = "experts") : base(name)
    {
        (ExpertCount, ModelDim, HiddenDim) = (expertCount, modelDim, hiddenDim);
        // nn.Linear's initialisation, U(±1/√fan_in) for weights and biases: each expert starts like the dense FFW.
        long E = expertCount;
        _fcWeight = LinearInitialised(modelDim, E * hiddenDim, modelDim);
        _fcBias = LinearInitialised(modelDim, E * hiddenDim);
        _projWeight = LinearInitialised(hiddenDim, E * modelDim, hiddenDim);
        _projBias = LinearInitialised(hiddenDim, E * modelDim);
        register_parameter("fc_weight", _fcWeight);
        register_parameter("fc_bias", _fcBias);
        register_parameter("proj_weight", _projWeight);
        register_parameter("proj_bias", _projBias);
    }

    static Parameter LinearInitialised(int fanIn, params long[] shape) =>
        new(empty(shape).uniform_(-1 / Math.Sqrt(fanIn), 1 / Math.Sqrt(fanIn)));

    /// <summary>E.</summary>
    public int ExpertCount { get; }

    /// <summary>d_model.</summary>
    public int ModelDim { get; }

    /// <summary>H, each expert's hidden width.</summary>
    public int HiddenDim { get; }

    /// <summary>Expert e applied to row block e. tokens: [E, C, d_model]; returns [E, C, d_model].</summary>
    public override Tensor forward(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        int E = ExpertCount, d = ModelDim, H = HiddenDim;
        var fc = _fcWeight.view(E, H, d).transpose(1, 2);                                    // [E, d, H]
        var hidden = nn.functional.gelu(tokens.bmm(fc) + _fcBias.view(E, 1, H));              // [E, C, H]
        var proj = _projWeight.view(E, d, H).transpose(1, 2);                                // [E, H, d]
        var output = hidden.bmm(proj) + _projBias.view(E, 1, d);                              // [E, C, d]
        return scope.MoveToOuter(output);
    }
}
