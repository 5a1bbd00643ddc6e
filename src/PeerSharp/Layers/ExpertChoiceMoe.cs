using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Mixture of experts with expert-choice routing (Zhou et al. 2022), the paper's MoE baseline. The router scores
/// every (token, expert) pair with a softmax over experts; each expert then takes the C tokens it scores highest,
/// C = c · tokens / E, and its outputs are weighted by those scores and summed into the tokens it took. Every
/// expert is exactly full; a token may be taken by several experts or by none (then only the residual carries it).
/// <para>
/// Routing groups, and why evaluation differs from training. An expert picks among all tokens of its group, so a
/// token's output depends on the other tokens of the group: expert choice is not causal. In training the group is
/// the whole batch (B·T tokens), as in Zhou et al. In evaluation each sequence is its own group, so a sequence's
/// loss does not depend on the other sequences of the batch; within a sequence it still depends on later tokens
/// (docs/BASELINES.md). Generation routes each step's new tokens among themselves. <see cref="Evaluation"/> chooses
/// other evaluation groups: the whole batch as in training, or causal routing, where each token is routed as if its
/// sequence ended with it.
/// </para>
/// State-dict names: router.weight [E, d_model], experts.* (see <see cref="MoeExperts"/>).
/// </summary>
public sealed class ExpertChoiceMoe : MoeLayer
{

    /// <summary>Builds a layer of width <paramref name="modelDim"/>, experts of hidden width <paramref name="hiddenDim"/>, freshly initialised.</summary>
    public ExpertChoiceMoe(int modelDim, int hiddenDim, MoeOptions options, string name = "moe") : base(modelDim, hiddenDim, options, MoeRouting.ExpertChoice, name)
    {
    }

    /// <summary>How evaluation routes (training always routes the whole batch); set from above, as an evaluation chooses.</summary>
    public ExpertChoiceEvaluation Evaluation { get; set; } = ExpertChoiceEvaluation.Sequence;

    /// <summary>Expert-choice forward. input: [B, T, d_model] (or [M, d_model]); returns the same shape.</summary>
    public override Tensor forward(Tensor input)
    {
        if (!training && Evaluation == ExpertChoiceEvaluation.Causal && input.dim() == 3) return CausalForward(input);
        using var scope = NewDisposeScope();
        int E = Options.ExpertCount, d = ModelDim;
        var x = RoutingGroups(input);                                                  // [G, S, d]
        long G = x.shape[0], S = x.shape[1], C = Options.Capacity(S);

        // Token-to-expert affinities: softmax over experts (Zhou et al. 2022, eq. 1).
        var probabilities = RouterProbabilities(x);                                    // [G, S, E]
        var (gates, tokens) = Route(probabilities, C);                                 // [G, E, C] each

        // Gather each expert's C tokens; all experts run as one batched product.
        var slots = tokens.view(G, E * C, 1).expand(-1, -1, d);                        // [G, E·C, d]
        var chosen = x.gather(1, slots).view(G, E, C, d).transpose(0, 1);             // [E, G, C, d]
        var outputs = Experts.forward(chosen.reshape(E, G * C, d));                   // [E, G·C, d]

        // Weight by the router's score and add into the tokens each expert took.
        var weighted = outputs.view(E, G, C, d).transpose(0, 1).reshape(G, E * C, d)
                       * gates.view(G, E * C, 1);                                      // [G, E·C, d]
        var y = zeros_like(x).scatter_add(1, slots, weighted);                         // [G, S, d]

        var picks = tokens.view(G, E * C);
        var taken = zeros(G, S, dtype: ScalarType.Int64).scatter_(1, picks, ones_like(picks));    // [G, S]
        LastRouting = new MoeRoutingRecord(G, S, C, G * E * C, 0, G * S - taken.sum().item<long>());
        return scope.MoveToOuter(y.view(input.shape));
    }

    /// <summary>
    /// Expert choice itself: each expert's C highest-scoring tokens of each group.
    /// </summary>
    /// <param name="probabilities">[G, S, E] router softmax per token.</param>
    /// <param name="capacity">C, tokens per expert and group.</param>
    /// <returns>gates [G, E, C]: the router scores of the chosen tokens; tokens [G, E, C]: their positions in the group.</returns>
    public static (Tensor Gates, Tensor Tokens) Route(Tensor probabilities, long capacity) =>
        probabilities.transpose(1, 2).topk((int)capacity, dim: -1);                   // [G, E, S] → [G, E, C]

    /// <summary>
    /// Causal expert choice in evaluation (<see cref="ExpertChoiceEvaluation.Causal"/>): each sequence's tokens are
    /// taken by the experts <see cref="CausalRoute"/> gives, so an expert may take more tokens of a sequence than its
    /// capacity for the whole (each was among the best of its prefix), and the experts' slots are their actual loads.
    /// </summary>
    Tensor CausalForward(Tensor input)
    {
        using var scope = NewDisposeScope();
        int E = Options.ExpertCount, d = ModelDim;
        long G = input.shape[0], S = input.shape[1], M = G * S;
        var probabilities = RouterProbabilities(input);                                // [G, S, E]
        var taken = CausalRoute(probabilities, Options).view(M, E).to_type(ScalarType.Int64);   // [M, E]
        var pairs = taken.nonzero();                                                   // [A, 2]: token, expert
        var (token, expert) = (pairs.select(1, 0), pairs.select(1, 1));
        var assignment = token * E + expert;                                           // [A] into [M·E]
        var position = (taken.cumsum(0) - 1).view(-1).index_select(0, assignment);     // [A] place in its expert's queue
        long C = taken.sum(0, type: ScalarType.Int64).max().item<long>();                                      // the busiest expert's load
        var gate = probabilities.reshape(-1).index_select(0, assignment);              // [A]
        var y = RunExperts(input.reshape(M, d), token, expert * C + position, gate, C);   // [M, d]
        LastRouting = new MoeRoutingRecord(G, S, C, pairs.shape[0], 0, taken.sum(1, type: ScalarType.Int64).eq(0).sum(type: ScalarType.Int64).item<long>());
        return scope.MoveToOuter(y.view(input.shape));
    }

    /// <summary>
    /// Causal expert choice: expert e takes token t when fewer than C_t of tokens 0..t score higher for e (an
    /// earlier token with an equal score counts as higher), C_t = <see cref="MoeOptions.Capacity"/>(t + 1), the
    /// capacity of a group of the prefix's size. The last token's choice is therefore the one expert choice makes
    /// over the whole sequence. It compares every pair of positions, O(S²·E) per sequence: cheap at evaluation's
    /// context lengths, and no kernel of its own.
    /// </summary>
    /// <param name="probabilities">[G, S, E] router softmax per token.</param>
    /// <param name="options">The layer's settings (capacity).</param>
    /// <returns>[G, S, E] booleans: whether expert e takes token t.</returns>
    public static Tensor CausalRoute(Tensor probabilities, MoeOptions options)
    {
        using var scope = NewDisposeScope();
        long S = probabilities.shape[1];
        var other = probabilities.unsqueeze(1);                                        // [G, 1, S', E]: token s' of the prefix
        var self = probabilities.unsqueeze(2);                                         // [G, S, 1, E]: token t
        var atOrBefore = ones(S, S, dtype: ScalarType.Bool, device: probabilities.device).tril().view(1, S, S, 1);       // s' ≤ t
        var before = ones(S, S, dtype: ScalarType.Bool, device: probabilities.device).tril(-1).view(1, S, S, 1);         // s' < t
        var ahead = other.gt(self).logical_and(atOrBefore).logical_or(other.eq(self).logical_and(before));               // [G, S, S', E]
        var rank = ahead.sum(2, type: ScalarType.Int64);                               // [G, S, E]
        var capacity = tensor(Enumerable.Range(1, (int)S).Select(n => options.Capacity(n)).ToArray(), device: probabilities.device).view(1, S, 1);
        return scope.MoveToOuter(rank.lt(capacity));
    }

    /// <summary>The tokens as [G, S, d]: the whole batch in training (and in evaluation with <see cref="ExpertChoiceEvaluation.TrainingGroup"/>), one group per sequence in evaluation.</summary>
    Tensor RoutingGroups(Tensor input) =>
        training || input.dim() != 3 || Evaluation == ExpertChoiceEvaluation.TrainingGroup ? input.reshape(1, -1, ModelDim) : input;
}
