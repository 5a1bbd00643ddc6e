using PeerSharp.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Baselines;

/// <summary>One expert of a mixture-of-experts layer computed on its own from the stacked weights, token by token.</summary>
static class MoeReference
{
    /// <summary>Expert e of <paramref name="experts"/> on one token x [d_model]: GELU(x W1ᵀ + b1) W2ᵀ + b2.</summary>
    public static Tensor Expert(MoeExperts experts, int e, Tensor x)
    {
        var state = experts.state_dict();
        int d = experts.ModelDim, H = experts.HiddenDim;
        var fc = state["fc_weight"].narrow(0, e * H, H);          // [H, d]
        var fcBias = state["fc_bias"].narrow(0, e * H, H);        // [H]
        var proj = state["proj_weight"].narrow(0, e * d, d);      // [d, H]
        var projBias = state["proj_bias"].narrow(0, e * d, d);    // [d]
        var hidden = nn.functional.gelu(fc.matmul(x) + fcBias);   // [H]
        return proj.matmul(hidden) + projBias;                    // [d]
    }

    /// <summary>Router softmax over experts for tokens x [M, d_model]: [M, E].</summary>
    public static Tensor Probabilities(Parameter routerWeight, Tensor x) => x.matmul(routerWeight.t()).softmax(-1);
}
