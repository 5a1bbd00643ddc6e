using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// What both MoE routings share: a router W_g [E, d_model] that scores every (token, expert) pair, and E dense
/// GELU experts. State-dict names: router.weight, experts.* (see <see cref="MoeExperts"/>).
/// </summary>
public abstract class MoeLayer : nn.Module<Tensor, Tensor>
{
    readonly Linear _router;

    /// <summary>Builds the router and experts; <paramref name="routing"/> is the routing the subclass implements.</summary>
    private protected MoeLayer(MoeOptions options, string routing, string name) : base(name)
    {
        options.Validate();
        if (options.Routing != routing)
            throw new PeerSharpException($"the {routing} MoE layer cannot use '{options.Routing}' routing");
        Options = options;
        _router = nn.Linear(options.ModelDim, options.ExpertCount, hasBias: false);
        Experts = new MoeExperts(options.ExpertCount, options.ModelDim, options.HiddenDim);
        register_module("router", _router);
        register_module("experts", Experts);
    }

    /// <summary>The layer's settings.</summary>
    public MoeOptions Options { get; }

    /// <summary>The router's weight W_g [E, d_model].</summary>
    public Parameter RouterWeight => _router.weight!;

    /// <summary>The experts.</summary>
    public MoeExperts Experts { get; }

    /// <summary>How the last forward routed its tokens.</summary>
    public MoeRouting? LastRouting { get; private protected set; }

    /// <summary>Router probabilities: softmax over experts of W_g x. x: [..., d_model] → [..., E].</summary>
    private protected Tensor RouterProbabilities(Tensor x) => _router.forward(x).softmax(-1);
}
