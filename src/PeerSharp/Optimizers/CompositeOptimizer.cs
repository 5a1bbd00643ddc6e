using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// Several optimizers over disjoint parameter sets, stepped together as one: the ordinary parameters with
/// dense <see cref="AdamW"/> and PEER's expert tables with <see cref="SparseAdamW"/> (or their own dense
/// AdamW), each part optionally at a fixed learning rate of its own instead of the schedule's.
/// The parts name their state alike ("step", "exp_avg.NAME", "exp_avg_sq.NAME"); their step counts advance
/// together, so the shared "step" is saved once and every part restores it.
/// </summary>
public sealed class CompositeOptimizer : IOptimizer
{
    readonly (IOptimizer Optimizer, double? FixedLearningRate)[] _parts;

    /// <summary>One optimizer of the given parts; a part with a fixed rate ignores the rate passed to <see cref="Step"/>.</summary>
    public CompositeOptimizer(params (IOptimizer Optimizer, double? FixedLearningRate)[] parts)
    {
        if (parts.Length == 0) throw new ArgumentException("a composite optimizer needs at least one part");
        _parts = parts;
    }

    /// <summary>The parts, in stepping order.</summary>
    internal IReadOnlyList<IOptimizer> Parts => _parts.Select(p => p.Optimizer).ToArray();

    /// <summary>The rate <see cref="Step"/> gives <paramref name="part"/> when the schedule is at <paramref name="learningRate"/>.</summary>
    internal double RateOf(IOptimizer part, double learningRate) => _parts.Single(p => p.Optimizer == part).FixedLearningRate ?? learningRate;

    /// <inheritdoc />
    public long StepCount => _parts[0].Optimizer.StepCount;

    /// <inheritdoc />
    public void Step(double learningRate)
    {
        foreach (var (optimizer, fixedRate) in _parts) optimizer.Step(fixedRate ?? learningRate);
    }

    /// <inheritdoc />
    public void ZeroGrad()
    {
        foreach (var (optimizer, _) in _parts) optimizer.ZeroGrad();
    }

    /// <inheritdoc />
    public Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor>();
        foreach (var (optimizer, _) in _parts)
            foreach (var (name, tensor) in optimizer.StateDict())
                state.TryAdd(name, tensor);   // "step" is shared: equal in every part
        return state;
    }

    /// <inheritdoc />
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        foreach (var (optimizer, _) in _parts) optimizer.LoadStateDict(state);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (optimizer, _) in _parts) optimizer.Dispose();
    }
}
