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

    /// <summary>
    /// Runs each expert on the tokens in its slots and adds the gated outputs into those tokens: y_token += gate ·
    /// expert(x_token) for every assignment. Slot s of expert e is row e·C + s of an [E·C, d] batch, so all experts
    /// run as one batched product; empty slots stay zero and are never read back.
    /// </summary>
    /// <param name="x">[M, d_model] tokens.</param>
    /// <param name="token">[A] token of each assignment.</param>
    /// <param name="slot">[A] its slot, e·C + position at expert e, each slot at most once.</param>
    /// <param name="gate">[A] its weight.</param>
    /// <param name="capacity">C, slots per expert.</param>
    /// <returns>[M, d_model].</returns>
    private protected Tensor RunExperts(Tensor x, Tensor token, Tensor slot, Tensor gate, long capacity)
    {
        int E = Options.ExpertCount, d = ModelDim;
        var dispatched = zeros(E * capacity, d, dtype: x.dtype).index_copy(0, slot, x.index_select(0, token));   // [E·C, d]
        var outputs = Experts.forward(dispatched.view(E, capacity, d)).view(E * capacity, d);                   // [E·C, d]
        return zeros_like(x).index_add(0, token, outputs.index_select(0, slot) * gate.unsqueeze(1), alpha: 1);   // [M, d]
    }

    /// <summary>Router probabilities: softmax over experts of W_g x. x: [..., d_model] → [..., E].</summary>
    private protected Tensor RouterProbabilities(Tensor x) => _router.forward(x).softmax(-1);
}
