using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// The L2 pull toward anchor weights θ₀ of <see cref="Config.TrainConfig.AnchorPull"/>, a continual-learning
/// baseline (docs/LIFELONG.md): after each optimizer step, θ ← θ − η·λ·(θ − θ₀) for every trainable parameter. It is
/// the decoupled form of the penalty (λ/2)·‖θ − θ₀‖² (L2-SP, Li et al. 2018), applied beside the optimizer as AdamW
/// applies weight decay, so Adam's normalisation does not rescale it and the clipping does not see it.
/// </summary>
sealed class AnchorPull
{
    readonly List<(Parameter Parameter, Tensor Anchor)> _pairs;
    readonly double _strength;

    AnchorPull(List<(Parameter, Tensor)> pairs, double strength) => (_pairs, _strength) = (pairs, strength);

    /// <summary>
    /// Pulls the parameters of <paramref name="model"/> toward the tensors of <paramref name="anchor"/> of the same
    /// names (owned by the caller, who keeps them while the pull steps) with strength <paramref name="strength"/>; null when it is 0.
    /// Every trainable parameter needs an anchor of its shape: a grown table has no anchor for its new rows, and is
    /// refused rather than pulled in part.
    /// </summary>
    public static AnchorPull? Create(nn.Module model, IReadOnlyDictionary<string, Tensor>? anchor, double strength)
    {
        if (strength == 0) return null;
        if (anchor is null) throw new PeerSharpException($"an anchor pull of {strength} needs anchor weights (the checkpoint an earlier phase ended with); none was given");
        var pairs = new List<(Parameter, Tensor)>();
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (!parameter.requires_grad) continue;   // frozen: nothing moves it
            if (!anchor.TryGetValue(name, out var weights))
                throw new PeerSharpException($"the anchor weights have no '{name}', which the anchor pull would pull; expected a checkpoint of the same model");
            if (!weights.shape.SequenceEqual(parameter.shape) || weights.dtype != parameter.dtype)
                throw new PeerSharpException($"the anchor's '{name}' is {weights.dtype} [{string.Join(", ", weights.shape)}] but the model's is {parameter.dtype} [{string.Join(", ", parameter.shape)}]; expected a checkpoint of the same model (a grown model cannot be pulled toward the one it grew from)");
            pairs.Add((parameter, weights));
        }
        return new AnchorPull(pairs, strength);
    }

    /// <summary>One step of the pull at learning rate <paramref name="learningRate"/>: θ ← θ + η·λ·(θ₀ − θ).</summary>
    public void Step(double learningRate)
    {
        using var noGrad = no_grad();
        var rate = learningRate * _strength;
        foreach (var (parameter, anchor) in _pairs)
            parameter.lerp_(anchor, rate);   // θ + rate·(θ₀ − θ)
    }
}
