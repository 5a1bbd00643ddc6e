using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Mixture of experts with token-choice top-k routing (Shazeer et al. 2017; GShard, Lepikhin et al. 2020;
/// Switch, Fedus et al. 2021). Each token sends itself to the k experts its router softmax scores highest, and
/// the expert outputs are weighted by those probabilities (Switch eq. 2). A load-balancing loss keeps the
/// experts evenly used (<see cref="IAuxiliaryLoss"/>).
/// <para>
/// Capacity. In training each expert computes a fixed C = c · k · tokens / E slots for the whole batch; choices
/// are served first choices first, then in token order (GShard), and those that find the expert full are
/// dropped. A token whose choices were all dropped gets a zero output, so only the residual carries it. In
/// evaluation nothing is dropped (each expert's capacity is its actual load), so every token's output depends on
/// that token alone and the model stays causal.
/// </para>
/// State-dict names: router.weight [E, d_model], experts.* (see <see cref="MoeExperts"/>).
/// </summary>
public sealed class TokenChoiceMoe : MoeLayer, IAuxiliaryLoss
{
    Tensor? _auxiliaryLoss;       // owned here, outside any dispose scope, until the next forward

    /// <summary>Builds a layer of width <paramref name="modelDim"/>, experts of hidden width <paramref name="hiddenDim"/>, freshly initialised.</summary>
    public TokenChoiceMoe(int modelDim, int hiddenDim, MoeOptions options, string name = "moe") : base(modelDim, hiddenDim, options, MoeRouting.TokenChoice, name)
    {
    }

    /// <inheritdoc />
    public Tensor? AuxiliaryLoss => _auxiliaryLoss;

    /// <summary>Token-choice forward. input: [..., d_model]; returns the same shape.</summary>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        int E = Options.ExpertCount, K = Options.TopK, d = ModelDim;
        var x = input.reshape(-1, d);                                                  // [M, d]: one routing group
        long M = x.shape[0];

        var probabilities = RouterProbabilities(x);                                    // [M, E]
        var (gates, experts) = probabilities.topk(K, dim: -1);                         // [M, K] each
        ReplaceAuxiliaryLoss(training ? Options.AuxLossWeight * LoadBalancingLoss(probabilities, experts, E) : null);

        // Queue position of every choice at its expert: first choices of all tokens, then second choices, …
        var choices = experts.t().reshape(-1);                                         // [K·M], choice-major
        var queue = nn.functional.one_hot(choices, E).cumsum(dim: 0);                  // [K·M, E]
        var position = queue.gather(1, choices.unsqueeze(1)).squeeze(1) - 1;           // [K·M]
        // Training: the fixed capacity; evaluation: the busiest expert's load, so that nothing is dropped.
        var C = training ? Options.Capacity(M) : queue[-1].max().item<long>();
        var kept = position.lt(C).nonzero().squeeze(1);                                // [A] kept choices
        var slot = (choices * C + position).index_select(0, kept);                     // [A] row of E·C slots
        var token = arange(M).repeat(K).index_select(0, kept);                         // [A]
        var gate = gates.t().reshape(-1).index_select(0, kept);                        // [A]

        var y = RunExperts(x, token, slot, gate, C);                                   // [M, d]

        var served = zeros(M, dtype: ScalarType.Int64).index_add(0, token, ones_like(token), alpha: 1);   // [M]
        long assignments = kept.shape[0];
        LastRouting = new MoeRoutingRecord(1, M, C, assignments, K * M - assignments, served.eq(0).sum().item<long>());
        return scope.MoveToOuter(y.view(input.shape));
    }

    /// <summary>
    /// The load-balancing loss of Switch (Fedus et al. 2021, eq. 4), unweighted: E · Σ_e f_e · P_e, where f_e is the
    /// fraction of the k·M choices that name expert e (before any capacity drop) and P_e the mean router
    /// probability of e. It is 1 when routing is perfectly balanced; only P_e carries a gradient.
    /// </summary>
    /// <param name="probabilities">[M, E] router softmax.</param>
    /// <param name="experts">[M, k] chosen experts.</param>
    /// <param name="expertCount">E.</param>
    public static Tensor LoadBalancingLoss(Tensor probabilities, Tensor experts, int expertCount)
    {
        using var scope = NewDisposeScope();
        var counts = nn.functional.one_hot(experts.flatten(), expertCount).sum(dim: 0).to(probabilities.dtype);   // [E]
        var fraction = counts / experts.numel();                                                           // f: [E]
        var meanProbability = probabilities.mean([0]);                                                      // P: [E]
        return scope.MoveToOuter(expertCount * (fraction * meanProbability).sum());
    }

    void ReplaceAuxiliaryLoss(Tensor? loss)
    {
        _auxiliaryLoss?.Dispose();
        _auxiliaryLoss = loss?.DetachFromDisposeScope();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) ReplaceAuxiliaryLoss(null);
        base.Dispose(disposing);
    }
}
