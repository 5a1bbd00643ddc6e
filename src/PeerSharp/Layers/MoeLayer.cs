using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// What both MoE routings share: a router W_g [E, d_model] that scores every (token, expert) pair, and E dense
/// GELU experts. State-dict names: router.weight, experts.* (see <see cref="MoeExperts"/>).
/// </summary>
public abstract class MoeLayer : nn.Module<Tensor, Tensor>
{
    // Field names are registered names, so that TorchSharp's field registration does not add them twice.
    [ComponentName(Name = "router")]
    readonly Linear _router;

    /// <summary>
    /// Builds the router and E experts of hidden width <paramref name="hiddenDim"/> for inputs of width
    /// <paramref name="modelDim"/>; <paramref name="routing"/> is the routing the subclass implements.
    /// </summary>
    private protected MoeLayer(int modelDim, int hiddenDim, MoeOptions options, MoeRouting routing, string name) : base(name)
    {
        if (modelDim <= 0 || hiddenDim <= 0) throw new PeerSharpException($"MoE widths {modelDim} and {hiddenDim} must be positive");
        options.Validate();
        if (options.Routing != routing)
            throw new PeerSharpException($"the {routing} MoE layer cannot use {options.Routing} routing");
        (ModelDim, HiddenDim, Options) = (modelDim, hiddenDim, options);
        _router = nn.Linear(modelDim, options.ExpertCount, hasBias: false);
        Experts = new MoeExperts(options.ExpertCount, modelDim, hiddenDim);
        register_module("router", _router);
        register_module("experts", Experts);
    }

    /// <summary>d_model, the width of the layer's input and output.</summary>
    public int ModelDim { get; }

    /// <summary>H, the hidden width of each expert.</summary>
    public int HiddenDim { get; }

    /// <summary>The layer's settings.</summary>
    public MoeOptions Options { get; }

    /// <summary>The router's weight W_g [E, d_model].</summary>
    internal Parameter RouterWeight => _router.weight!;

    /// <summary>The experts.</summary>
    [field: ComponentName(Name = "experts")]
    public MoeExperts Experts { get; }

    /// <summary>How the last forward routed its tokens.</summary>
    public MoeRoutingRecord? LastRouting { get; private protected set; }

    /// <summary>Router probabilities: softmax over experts of W_g x. x: [..., d_model] → [..., E].</summary>
    private protected Tensor RouterProbabilities(Tensor x) => _router.forward(x).softmax(-1);
}
