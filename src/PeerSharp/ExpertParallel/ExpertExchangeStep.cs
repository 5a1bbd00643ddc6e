using PeerSharp.Kernels;
using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.ExpertParallel;

/// <summary>
/// PEER's step 5 in expert parallelism (<see cref="ExpertExchange"/>): the layer's tables hold this rank's rows of
/// <paramref name="owners"/>, and each selection is computed by the rank that owns its expert. Attached to a layer
/// by <see cref="ExpertParallelism.Apply"/> (<see cref="RetrievalContext.Experts"/>).
/// </summary>
sealed class ExpertExchangeStep(ExpertOwners owners) : ExpertStep
{
    public override Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation) =>
        ExpertExchange.Forward(x, ids, gates, down, up, activation, owners);
}
