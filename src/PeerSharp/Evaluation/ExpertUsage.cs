using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Evaluation;

/// <summary>
/// Expert usage and unevenness (Lample et al. 2019; DESIGN.md "Metrics"): accumulates z'_i = Σ_x g_i(x) over
/// the tokens seen, then z = z' / ‖z'‖₁, usage = fraction of experts with z_i ≠ 0 and
/// unevenness = KL(z ‖ uniform) = log N + Σ z_i log z_i.
/// </summary>
public sealed class ExpertUsage : ISelectionObserver, IDisposable
{
    readonly Tensor _weight;   // z', [N], float64 so that small gates still count after millions of tokens

    /// <summary>A tracker for N experts.</summary>
    public ExpertUsage(long expertCount)
    {
        ExpertCount = expertCount;
        _weight = zeros(expertCount, dtype: ScalarType.Float64);
    }

    /// <summary>N.</summary>
    public long ExpertCount { get; }

    /// <summary>Adds one batch of selections: ids and gates of the same shape.</summary>
    public void Observe(Tensor ids, Tensor gates)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        _weight.index_add_(0, ids.flatten(), gates.detach().flatten().to(ScalarType.Float64), alpha: 1);
        Selections += ids.numel();
    }

    /// <summary>Fraction of experts that received any gate weight.</summary>
    public double Usage
    {
        get
        {
            using var scope = NewDisposeScope();
            return _weight.gt(0).to(ScalarType.Float64).mean().item<double>();
        }
    }

    /// <summary>KL divergence of the normalised gate mass from the uniform distribution, in nats.</summary>
    public double Unevenness
    {
        get
        {
            using var scope = NewDisposeScope();
            var total = _weight.sum();
            if (total.item<double>() == 0) return 0;
            var z = _weight / total;
            var zLogZ = where(z.gt(0), z * z.clamp_min(1e-300).log(), zeros_like(z));
            return Math.Log(ExpertCount) + zLogZ.sum().item<double>();
        }
    }

    /// <summary>(token, head, slot) selections added so far: one per expert (or memory value) a forward used.</summary>
    public long Selections { get; private set; }

    /// <inheritdoc />
    public void Dispose() => _weight.Dispose();
}
