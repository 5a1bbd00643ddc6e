using PeerSharp.Distributed;
using PeerSharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Evaluation;

/// <summary>
/// Expert usage and unevenness (Lample et al. 2019; DESIGN.md "Metrics"): accumulates z'_i = Σ_x g_i(x) over
/// the tokens seen, then z = z' / ‖z'‖₁, usage = fraction of experts with z_i ≠ 0 and
/// unevenness = KL(z ‖ uniform) = log N + Σ z_i log z_i.
/// <para>
/// Two diagnostics of why usage is low (experiments/usage/FINDINGS.md): per half, the gate mass of each of the n
/// sub-keys (id = a·n + b), since usage can never exceed (sub-keys a used) × (sub-keys b used) / N; and the
/// number of distinct first-choice experts per head, which counts how many different places one head's queries
/// point to.
/// </para>
/// </summary>
public sealed class ExpertUsage : ISelectionObserver, IDisposable
{
    readonly Tensor _weight;       // z', [N], float64 so that small gates still count after millions of tokens
    readonly Tensor? _halves;      // [2, n]: gate mass of the selected experts whose id has sub-key j in that half
    Tensor? _firstChoices;         // [h, N]: times expert i was head j's best match (allocated at the first batch)

    /// <summary>A tracker for N experts; the halves are tracked when N = n².</summary>
    public ExpertUsage(long expertCount)
    {
        ExpertCount = expertCount;
        _weight = zeros(expertCount, dtype: ScalarType.Float64);
        var n = (long)Math.Round(Math.Sqrt(expertCount));
        if (n * n == expertCount)
        {
            SubKeyCount = n;
            _halves = zeros(2, n, dtype: ScalarType.Float64);
        }
    }

    /// <summary>N.</summary>
    public long ExpertCount { get; }

    /// <summary>n, the sub-keys per half; 0 when N is not a perfect square.</summary>
    public long SubKeyCount { get; }

    /// <summary>Adds one batch of selections: ids and gates of the same shape, [..., h, k] (best first).</summary>
    public void Observe(Tensor ids, Tensor gates)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flatIds = ids.flatten();
        var mass = gates.detach().flatten().to(ScalarType.Float64);
        _weight.index_add_(0, flatIds, mass, alpha: 1);
        if (_halves is not null)
        {
            _halves[0].index_add_(0, flatIds.div(SubKeyCount, rounding_mode: RoundingMode.floor), mass, alpha: 1);
            _halves[1].index_add_(0, flatIds.remainder(SubKeyCount), mass, alpha: 1);
        }
        if (ids.dim() >= 2)
        {
            var first = ids.select(-1, 0).reshape(-1, ids.shape[^2]);                      // [M, h]: each head's best
            var heads = first.shape[1];
            _firstChoices ??= zeros(heads, ExpertCount, dtype: ScalarType.Float64).DetachFromDisposeScope();
            var cells = (first + arange(heads, dtype: first.dtype) * ExpertCount).flatten();
            _firstChoices.view(-1).index_fill_(0, cells, 1.0);
        }
        Selections += ids.numel();
    }

    /// <summary>
    /// Adds the trackers of all ranks (each saw its own share of the tokens), so that every rank holds the totals.
    /// A rank that saw no batch contributes zeros.
    /// </summary>
    public void AddOverRanks(ICommunicator replicas)
    {
        if (replicas.Size == 1) return;
        Span<long> counts = [Selections, _firstChoices is null ? 0 : 1, _firstChoices?.shape[0] ?? 0];
        replicas.AllReduceSum(counts);
        Selections = counts[0];
        replicas.AllReduceSum(_weight);
        if (_halves is not null) replicas.AllReduceSum(_halves);
        if (counts[1] == 0) return;
        _firstChoices ??= zeros(counts[2] / counts[1], ExpertCount, dtype: ScalarType.Float64).DetachFromDisposeScope();
        replicas.AllReduceSum(_firstChoices);
    }

    /// <summary>Fraction of experts that received any gate weight.</summary>
    public double Usage => UsageOf(_weight);

    /// <summary>KL divergence of the normalised gate mass from the uniform distribution, in nats.</summary>
    public double Unevenness => UnevennessOf(_weight);

    /// <summary>Per half, the sub-keys that are part of a selected expert's id: usage and unevenness over n; null unless N = n².</summary>
    public IReadOnlyList<SubKeyUsage>? Halves => _halves is null ? null : [.. Enumerable.Range(0, 2).Select(h => new SubKeyUsage(UsageOf(_halves[h]), UnevennessOf(_halves[h])))];

    /// <summary>Distinct experts that were some token's first choice, per head (mean over heads).</summary>
    public double FirstChoices
    {
        get
        {
            if (_firstChoices is null) return 0;
            using var scope = NewDisposeScope();
            return _firstChoices.gt(0).to(ScalarType.Float64).sum(1).mean().item<double>();
        }
    }

    /// <summary>(token, head, slot) selections added so far: one per expert (or memory value) a forward used.</summary>
    public long Selections { get; private set; }

    static double UsageOf(Tensor weight)
    {
        using var scope = NewDisposeScope();
        return weight.gt(0).to(ScalarType.Float64).mean().item<double>();
    }

    static double UnevennessOf(Tensor weight)
    {
        using var scope = NewDisposeScope();
        var total = weight.sum();
        if (total.item<double>() == 0) return 0;
        var z = weight / total;
        var zLogZ = where(z.gt(0), z * z.clamp_min(1e-300).log(), zeros_like(z));
        return Math.Log(weight.shape[0]) + zLogZ.sum().item<double>();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _weight.Dispose();
        _halves?.Dispose();
        _firstChoices?.Dispose();
    }
}

/// <summary>One half's sub-keys over an evaluation.</summary>
/// <param name="Usage">Fraction of the n sub-keys that are part of a selected expert's id.</param>
/// <param name="Unevenness">KL(gate mass per sub-key ‖ uniform over n), nats.</param>
public sealed record SubKeyUsage(double Usage, double Unevenness);
