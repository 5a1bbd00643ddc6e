using PeerSharp.Distributed;
using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

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
    public static double ClipGlobalNorm(IEnumerable<Parameter> parameters, double maxNorm, double otherSumOfSquares) =>
        Clip(parameters, maxNorm, [], SingleProcess.Instance, otherSumOfSquares);

    /// <summary><see cref="ClipGlobalNorm(IEnumerable{Parameter}, double, double)"/> of the parameters' gradients alone.</summary>
    public static double ClipGlobalNorm(IEnumerable<Parameter> parameters, double maxNorm) =>
        Clip(parameters, maxNorm, [], SingleProcess.Instance, 0);

    /// <summary>
    /// <see cref="ClipGlobalNorm(IEnumerable{Parameter}, double, double)"/> where the gradients of <paramref name="sharded"/>
    /// are split over the ranks (expert parallelism's tables, DESIGN.md "Distributed training"): the squares of their
    /// norms are summed over <paramref name="ranks"/>, so every rank clips by the norm of the whole model, the one
    /// process's norm. <paramref name="parameters"/> hold the same gradients on every rank.
    /// </summary>
    public static double ClipGlobalNorm(IEnumerable<Parameter> parameters, double maxNorm, IReadOnlyList<Parameter> sharded, ICommunicator ranks) =>
        Clip(parameters, maxNorm, sharded, ranks, 0);

    static double Clip(IEnumerable<Parameter> parameters, double maxNorm, IReadOnlyList<Parameter> sharded, ICommunicator ranks, double otherSumOfSquares)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var values = new List<Tensor>();
        Span<double> shardSquares = [SumOfSquares(sharded, values)];
        if (sharded.Count > 0) ranks.AllReduceSum(shardSquares);
        double total = Math.Sqrt(SumOfSquares(parameters, values) + shardSquares[0] + otherSumOfSquares);
        double scale = Scale(total, maxNorm);
        if (scale != 1)
            foreach (var entries in values) entries.mul_(scale);
        return total;
    }

    /// <summary>The factor clipping applies at gradient norm <paramref name="total"/>: maxNorm / (total + 1e-6) above maxNorm, otherwise 1.</summary>
    internal static double Scale(double total, double maxNorm) =>
        maxNorm > 0 && total > maxNorm && double.IsFinite(total) ? maxNorm / (total + 1e-6) : 1;

    /// <summary>Σ of the squared norms of the parameters' gradients; collects their entries into <paramref name="values"/>.</summary>
    static double SumOfSquares(IEnumerable<Parameter> parameters, List<Tensor> values)
    {
        double sumOfSquares = 0;
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
        return sumOfSquares;
    }
}
