using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>An optimizer whose whole state can be saved in a checkpoint and restored bit-exactly.</summary>
public interface IOptimizer : IDisposable
{
    /// <summary>Optimizer steps taken so far.</summary>
    long StepCount { get; }

    /// <summary>Applies one update with the given learning rate, using the parameters' current gradients.</summary>
    void Step(double learningRate);

    /// <summary>Clears the gradients of every parameter it updates.</summary>
    void ZeroGrad();

    /// <summary>The optimizer's tensors by name (moments, step counts), for checkpoints.</summary>
    Dictionary<string, Tensor> StateDict();

    /// <summary>Restores tensors written by <see cref="StateDict"/>; throws if one is missing or mis-shaped.</summary>
    void LoadStateDict(IReadOnlyDictionary<string, Tensor> state);
}
