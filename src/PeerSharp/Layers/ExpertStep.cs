using PeerSharp.Kernels;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// PEER's step 5, f(x) = Σ_heads Σ_selected g · σ(u_id · x) · v_id, in one of its variants, chosen once (by the layer
/// from its kernel, or attached through <see cref="RetrievalContext.Experts"/>) instead of at every forward: the
/// plain tensor ops (the oracle), the fused kernel, the fused kernel updating the tables in the backward, or, from
/// above, expert parallelism's exchange with the ranks that hold the rows (ExpertParallel/ExpertExchangeStep.cs).
/// </summary>
public abstract class ExpertStep
{
    /// <summary>Variants live in this assembly only: the layer's contract with its tables is internal.</summary>
    private protected ExpertStep() { }

    /// <summary>x [M, d_model], ids and gates [M, h, k], tables down and up [N, d_model] → [M, d_model].</summary>
    public abstract Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation);

    /// <summary>Pure tensor ops (<see cref="PlainExperts"/>): dense table gradients.</summary>
    public static ExpertStep Plain { get; } = new PlainStep();

    /// <summary>The fused C# kernel (<see cref="FusedExperts"/>): row-sparse table gradients.</summary>
    public static ExpertStep Fused { get; } = new FusedStep(null);

    /// <summary>The fused kernel whose backward hands the tables' rows to <paramref name="update"/> instead of storing them (docs/SPARSE_UPDATES.md, "Update in the backward").</summary>
    internal static ExpertStep UpdatingInBackward(ITableUpdate update) => new FusedStep(update);

    sealed class PlainStep : ExpertStep
    {
        public override Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation) =>
            PlainExperts.Forward(x, ids, gates, down, up, activation);
    }

    sealed class FusedStep(ITableUpdate? update) : ExpertStep
    {
        public override Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation) =>
            FusedExperts.Forward(x, ids, gates, down, up, activation, null, update);
    }
}
