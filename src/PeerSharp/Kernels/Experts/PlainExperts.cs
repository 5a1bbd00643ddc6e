using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// PEER step 5 in pure tensor ops: y = Σ_heads Σ_selected g · σ(u_id · x) · v_id. It gathers the selected
/// rows of both expert tables into [M, h, k, d_model] tensors: simple, device independent and the oracle
/// the fused kernel is tested against, but that gather is what makes it slow and memory hungry at scale.
/// </summary>
public static class PlainExperts
{
    /// <param name="x">[M, d_model] token inputs.</param>
    /// <param name="ids">[M, h, k] selected expert ids.</param>
    /// <param name="gates">[M, h, k] softmax gates.</param>
    /// <param name="down">[N, d_model] u_i rows.</param>
    /// <param name="up">[N, d_model] v_i rows.</param>
    /// <param name="activation">σ.</param>
    /// <returns>[M, d_model].</returns>
    public static Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation)
    {
        using var scope = NewDisposeScope();
        var rows = ids.flatten();                                            // [M·h·k]
        var shape = ids.shape.Append(down.shape[1]).ToArray();
        var u = down.index_select(0, rows).view(shape);                      // [M, h, k, d_model]
        var v = up.index_select(0, rows).view(shape);                        // [M, h, k, d_model]
        var logits = einsum("md,mhkd->mhk", x, u);                           // [M, h, k]
        var weights = gates * Activate(logits, activation);                 // [M, h, k]
        var y = einsum("mhk,mhkd->md", weights, v);                          // [M, d_model]
        return scope.MoveToOuter(y);
    }

    /// <summary>σ as configured.</summary>
    public static Tensor Activate(Tensor logits, ExpertActivation activation) => activation switch
    {
        ExpertActivation.Gelu => nn.functional.gelu(logits),
        ExpertActivation.Relu => nn.functional.relu(logits),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };
}
