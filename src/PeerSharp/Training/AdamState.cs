using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>
/// What both AdamW variants keep between steps: the step count and, per named parameter, its first and second
/// moments. Saved as "step", "exp_avg.NAME" and "exp_avg_sq.NAME" by <see cref="AdamW"/> and
/// <see cref="SparseAdamW"/> alike, so a checkpoint moves between the plain and the fused kernel.
/// </summary>
sealed class AdamState : IDisposable
{
    readonly Tensor _step = zeros(1, dtype: ScalarType.Int64);

    /// <summary>One parameter with its decoupled weight decay and its moments.</summary>
    public sealed record Entry(string Name, Parameter Parameter, double WeightDecay, Tensor ExpAvg, Tensor ExpAvgSq);

    /// <summary>Zero moments for each named parameter.</summary>
    public AdamState(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters)
    {
        Entries = [.. parameters.Select(p => new Entry(p.Name, p.Parameter, p.WeightDecay,
            zeros_like(p.Parameter).requires_grad_(false), zeros_like(p.Parameter).requires_grad_(false)))];
    }

    /// <summary>The parameters, in the order given.</summary>
    public IReadOnlyList<Entry> Entries { get; }

    /// <summary>Steps taken.</summary>
    public long StepCount => _step.item<long>();

    /// <summary>Counts one more step and returns the new count t (for bias correction).</summary>
    public long Advance()
    {
        _step.add_(1);
        return StepCount;
    }

    /// <summary>Drops every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var e in Entries) e.Parameter.grad = null;
    }

    /// <summary>The state's tensors by name.</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor> { ["step"] = _step };
        foreach (var e in Entries)
        {
            state[$"exp_avg.{e.Name}"] = e.ExpAvg;
            state[$"exp_avg_sq.{e.Name}"] = e.ExpAvgSq;
        }
        return state;
    }

    /// <summary>Copies saved tensors in; throws a <see cref="PeerSharpException"/> if one is missing or mis-shaped.</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        CopyInto(state, "step", _step);
        foreach (var e in Entries)
        {
            CopyInto(state, $"exp_avg.{e.Name}", e.ExpAvg);
            CopyInto(state, $"exp_avg_sq.{e.Name}", e.ExpAvgSq);
        }
    }

    static void CopyInto(IReadOnlyDictionary<string, Tensor> state, string name, Tensor destination)
    {
        if (!state.TryGetValue(name, out var source))
            throw new PeerSharpException($"optimizer state has no tensor '{name}'; the checkpoint was written for another model");
        if (!source.shape.SequenceEqual(destination.shape))
            throw new PeerSharpException($"optimizer tensor '{name}' has shape [{string.Join(", ", source.shape)}], expected [{string.Join(", ", destination.shape)}]");
        destination.copy_(source);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _step.Dispose();
        foreach (var e in Entries)
        {
            e.ExpAvg.Dispose();
            e.ExpAvgSq.Dispose();
        }
    }
}
