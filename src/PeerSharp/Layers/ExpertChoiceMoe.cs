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
/// (docs/BASELINES.md). Generation routes each step's new tokens among themselves.
/// </para>
/// State-dict names: router.weight [E, d_model], experts.* (see <see cref="MoeExperts"/>).
/// </summary>
public sealed class ExpertChoiceMoe : MoeLayer
{

    /// <summary>Builds a layer of width <paramref name="modelDim"/>, experts of hidden width <paramref name="hiddenDim"/>, freshly initialised.</summary>
    public ExpertChoiceMoe(int modelDim, int hiddenDim, MoeOptions options, string name = "moe") : base(modelDim, hiddenDim, options, MoeRouting.ExpertChoice, name)
    {
    }

    /// <summary>Expert-choice forward. input: [B, T, d_model] (or [M, d_model]); returns the same shape.</summary>
    public override Tensor forward(Tensor input)
    {
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

    /// <summary>The tokens as [G, S, d]: the whole batch in training, one group per sequence in evaluation.</summary>
    Tensor RoutingGroups(Tensor input) =>
        training || input.dim() != 3 ? input.reshape(1, -1, ModelDim) : input;
}
