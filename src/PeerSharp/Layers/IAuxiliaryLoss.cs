using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// A layer that adds its own term to the training objective, such as the load-balancing loss of token-choice
/// routing (Fedus et al. 2021, eq. 4). <see cref="Model.TransformerLM.Loss"/> adds the terms of all its blocks
/// while the model is in training mode.
/// </summary>
public interface IAuxiliaryLoss
{
    /// <summary>
    /// The weighted auxiliary loss of the last forward in training mode: a scalar in that forward's autograd graph.
    /// Null in evaluation mode and before the first forward. The layer owns the tensor; it stays valid until the
    /// layer's next forward.
    /// </summary>
    Tensor? AuxiliaryLoss { get; }
}
