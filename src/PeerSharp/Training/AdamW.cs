using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter 2019) with per-parameter weight decay, written out so that its whole state
/// is plain named tensors (checkpointed as safetensors and restored bit-exactly on resume).
/// </summary>
public sealed class AdamW : IOptimizer
{
    readonly List<Entry> _entries = [];
    readonly double _beta1, _beta2, _epsilon;
    readonly Tensor _step = zeros(1, dtype: ScalarType.Int64);

    sealed record Entry(string Name, Parameter Parameter, double WeightDecay, Tensor ExpAvg, Tensor ExpAvgSq);

    /// <summary>An optimizer over named parameters, each with its own decoupled weight decay.</summary>
    public AdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
                 double beta1 = 0.9, double beta2 = 0.95, double epsilon = 1e-8)
    {
        (_beta1, _beta2, _epsilon) = (beta1, beta2, epsilon);
        foreach (var (name, parameter, decay) in parameters)
            _entries.Add(new Entry(name, parameter, decay, zeros_like(parameter).requires_grad_(false), zeros_like(parameter).requires_grad_(false)));
    }

    /// <inheritdoc />
    public long StepCount => _step.item<long>();

    /// <summary>Names of the parameters it updates.</summary>
    public IEnumerable<string> ParameterNames => _entries.Select(e => e.Name);

    /// <inheritdoc />
    public void Step(double learningRate)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        _step.add_(1);
        var t = StepCount;
        var correction1 = 1 - Math.Pow(_beta1, t);
        var correction2 = 1 - Math.Pow(_beta2, t);
        foreach (var e in _entries)
        {
            var grad = e.Parameter.grad;
            if (grad is null) continue;
            if (grad.is_sparse) grad = grad.to_dense();   // a row-sparse table gradient on a dense-updated table
            // Decoupled decay: p ← p · (1 − lr·λ), then the Adam step on the moments.
            if (e.WeightDecay != 0) e.Parameter.mul_(1 - learningRate * e.WeightDecay);
            e.ExpAvg.mul_(_beta1).add_(grad, alpha: 1 - _beta1);
            e.ExpAvgSq.mul_(_beta2).addcmul_(grad, grad, value: 1 - _beta2);
            var denominator = (e.ExpAvgSq / correction2).sqrt_().add_(_epsilon);
            e.Parameter.addcdiv_(e.ExpAvg, denominator, value: -learningRate / correction1);
        }
    }

    /// <inheritdoc />
    public void ZeroGrad()
    {
        foreach (var e in _entries) e.Parameter.grad = null;
    }

    /// <inheritdoc />
    public Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor> { ["step"] = _step };
        foreach (var e in _entries)
        {
            state[$"exp_avg.{e.Name}"] = e.ExpAvg;
            state[$"exp_avg_sq.{e.Name}"] = e.ExpAvgSq;
        }
        return state;
    }

    /// <inheritdoc />
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        CopyInto(state, "step", _step);
        foreach (var e in _entries)
        {
            CopyInto(state, $"exp_avg.{e.Name}", e.ExpAvg);
            CopyInto(state, $"exp_avg_sq.{e.Name}", e.ExpAvgSq);
        }
    }

    internal static void CopyInto(IReadOnlyDictionary<string, Tensor> state, string name, Tensor destination)
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
        foreach (var e in _entries)
        {
            e.ExpAvg.Dispose();
            e.ExpAvgSq.Dispose();
        }
    }
}
