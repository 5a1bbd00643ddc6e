using PeerSharp.Config;
using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// What the AdamW variants keep between steps: the step count and, per named parameter, its first and second
/// moments. Saved as "step", "exp_avg.NAME" and "exp_avg_sq.NAME" by <see cref="AdamW"/> and
/// <see cref="SparseAdamW"/> alike, so a checkpoint moves between the plain and the fused kernel. The row-wise
/// table states (<see cref="TableOptimizerState"/>) keep "exp_avg_sq_row.NAME" [N] instead of "exp_avg_sq.NAME",
/// and "exp_avg.NAME" in bfloat16 or not at all; their checkpoints resume only with the same choice.
/// </summary>
sealed class AdamState : IDisposable
{
    readonly Tensor _step = zeros(1, dtype: ScalarType.Int64);

    /// <summary>
    /// One parameter with its decoupled weight decay and its moments: <paramref name="ExpAvg"/> shaped like the
    /// parameter (float32 or bfloat16) or null, <paramref name="ExpAvgSq"/> shaped like the parameter or one value per
    /// row, in the parameter's dtype, but float32 for a bfloat16 parameter (bfloat16 expert tables).
    /// </summary>
    public sealed record Entry(string Name, Parameter Parameter, double WeightDecay, Tensor? ExpAvg, Tensor ExpAvgSq);

    /// <summary>Zero moments for each named parameter, of the given kind (row-wise kinds need 2-D parameters).</summary>
    public AdamState(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
                     TableOptimizerState kind = TableOptimizerState.Full)
    {
        Kind = kind;
        Entries = [.. parameters.Select(p => new Entry(p.Name, p.Parameter, p.WeightDecay, FirstMoment(p.Parameter, kind), SecondMoment(p.Parameter, kind)))];
    }

    /// <summary>What is kept per parameter.</summary>
    public TableOptimizerState Kind { get; }

    /// <summary>The parameters, in the order given.</summary>
    public IReadOnlyList<Entry> Entries { get; }

    // Moments on huge pages (HugePages): those of the expert tables are read at random rows, like the tables.
    static Tensor? FirstMoment(Parameter parameter, TableOptimizerState kind) => kind switch
    {
        TableOptimizerState.RowWiseNoMomentum => null,
        TableOptimizerState.RowWiseBf16 => HugePages.Zeros(parameter, ScalarType.BFloat16).requires_grad_(false),
        _ => HugePages.Zeros(parameter, MomentType(parameter)).requires_grad_(false),
    };

    static Tensor SecondMoment(Parameter parameter, TableOptimizerState kind) => kind == TableOptimizerState.Full
        ? HugePages.Zeros(parameter, MomentType(parameter)).requires_grad_(false)
        : zeros(parameter.shape[0], dtype: MomentType(parameter));   // [N]: one value per row

    static ScalarType MomentType(Parameter parameter) => parameter.dtype == ScalarType.BFloat16 ? ScalarType.Float32 : parameter.dtype;

    string SecondMomentName(string parameter) => Kind == TableOptimizerState.Full ? $"exp_avg_sq.{parameter}" : $"exp_avg_sq_row.{parameter}";

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
            if (e.ExpAvg is not null) state[$"exp_avg.{e.Name}"] = e.ExpAvg;
            state[SecondMomentName(e.Name)] = e.ExpAvgSq;
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
            if (e.ExpAvg is not null) CopyInto(state, $"exp_avg.{e.Name}", e.ExpAvg);
            CopyInto(state, SecondMomentName(e.Name), e.ExpAvgSq);
        }
    }

    static void CopyInto(IReadOnlyDictionary<string, Tensor> state, string name, Tensor destination)
    {
        if (!state.TryGetValue(name, out var source))
            throw new PeerSharpException($"optimizer state has no tensor '{name}'; the checkpoint was written for another model or table optimizer state");
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
            e.ExpAvg?.Dispose();
            e.ExpAvgSq.Dispose();
        }
    }
}
