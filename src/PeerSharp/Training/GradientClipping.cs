using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>Global gradient-norm clipping over dense gradients and the row-sparse gradients of the fused PEER kernel.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Rescales all gradients in place so that their global L2 norm is at most <paramref name="maxNorm"/>
    /// (as torch.nn.utils.clip_grad_norm_: factor maxNorm / (norm + 1e-6)) and returns the norm before clipping.
    /// Sparse gradients count each row once: repeated rows are merged first (the merged gradient replaces
    /// .grad). maxNorm ≤ 0 only measures. A non-finite norm leaves the gradients as they are, so the caller
    /// can see it and skip the step. <paramref name="otherSumOfSquares"/> adds gradients held nowhere as .grad (the
    /// table rows updated in the backward, docs/SPARSE_UPDATES.md) to the norm; they are not rescaled.
    /// </summary>
    public static double ClipGlobalNorm(IEnumerable<Parameter> parameters, double maxNorm, double otherSumOfSquares = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var values = new List<Tensor>();
        double sumOfSquares = otherSumOfSquares;
        foreach (var parameter in parameters)
        {
            var grad = parameter.grad;
            if (grad is null) continue;
            if (grad.is_sparse && !SparseRows.IsCoalesced(grad))
            {
                grad = SparseRows.Coalesce(grad);
                parameter.grad = grad;
            }
            var entries = grad.is_sparse ? grad.SparseValues : grad;   // the sparse values alias the gradient's storage
            double norm = entries.norm().item<float>();
            sumOfSquares += norm * norm;
            values.Add(entries);
        }
        double total = Math.Sqrt(sumOfSquares);
        double scale = Scale(total, maxNorm);
        if (scale != 1)
            foreach (var entries in values) entries.mul_(scale);
        return total;
    }

    /// <summary>The factor clipping applies at gradient norm <paramref name="total"/>: maxNorm / (total + 1e-6) above maxNorm, otherwise 1.</summary>
    internal static double Scale(double total, double maxNorm) =>
        maxNorm > 0 && total > maxNorm && double.IsFinite(total) ? maxNorm / (total + 1e-6) : 1;
}
