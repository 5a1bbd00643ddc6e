using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// AdamW (Loshchilov and Hutter 2019) with per-parameter weight decay, written out so that its whole state
/// is plain named tensors (checkpointed as safetensors and restored bit-exactly on resume).
/// </summary>
public sealed class AdamW : IOptimizer
{
    readonly AdamState _state;
    readonly double _beta1, _beta2, _epsilon;

    /// <summary>An optimizer over named parameters, each with its own decoupled weight decay.</summary>
    public AdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
                 double beta1 = 0.9, double beta2 = 0.95, double epsilon = 1e-8)
    {
        (_beta1, _beta2, _epsilon) = (beta1, beta2, epsilon);
        _state = new AdamState(parameters);
    }

    /// <inheritdoc />
    public long StepCount => _state.StepCount;

    /// <summary>Names of the parameters it updates.</summary>
    internal IEnumerable<string> ParameterNames => _state.Entries.Select(e => e.Name);

    /// <inheritdoc />
    public void Step(double learningRate)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var t = _state.Advance();
        var correction1 = 1 - Math.Pow(_beta1, t);
        var correction2 = 1 - Math.Pow(_beta2, t);
        foreach (var e in _state.Entries)
        {
            var grad = e.Parameter.grad;
            if (grad is null) continue;
            if (grad.is_sparse) grad = grad.to_dense();   // a row-sparse table gradient on a dense-updated table
            // Decoupled decay: p ← p · (1 − lr·λ), then the Adam step on the moments.
            if (e.WeightDecay != 0) e.Parameter.mul_(1 - learningRate * e.WeightDecay);
            e.ExpAvg!.mul_(_beta1).add_(grad, alpha: 1 - _beta1);
            e.ExpAvgSq.mul_(_beta2).addcmul_(grad, grad, value: 1 - _beta2);
            var denominator = (e.ExpAvgSq / correction2).sqrt_().add_(_epsilon);
            e.Parameter.addcdiv_(e.ExpAvg, denominator, value: -learningRate / correction1);
        }
    }

    /// <inheritdoc />
    public void ZeroGrad() => _state.ZeroGrad();

    /// <inheritdoc />
    public Dictionary<string, Tensor> StateDict() => _state.StateDict();

    /// <inheritdoc />
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state) => _state.LoadStateDict(state);

    /// <inheritdoc />
    public void Dispose() => _state.Dispose();
}
