using static TorchSharp.torch;

namespace PeerSharp.Evaluation;

/// <summary>
/// Draws the next token from one position's logits with <see cref="SamplingOptions"/>: greedy at temperature 0,
/// otherwise softmax(logits / temperature) restricted to the top-k tokens and then to the top-p nucleus, sampled
/// with the sequence's own generator (so that a sequence's draws never depend on another's).
/// </summary>
public static class TokenSampler
{
    /// <summary>The next token for logits (V).</summary>
    public static int Sample(Tensor logits, SamplingOptions options, TorchSharp.torch.Generator random)
    {
        using var scope = NewDisposeScope();
        if (options.Temperature == 0) return (int)logits.argmax().item<long>();
        var scaled = logits / options.Temperature;
        if (options.TopK > 0 && options.TopK < scaled.shape[0])
        {
            var threshold = scaled.topk(options.TopK).values[-1];
            scaled = scaled.masked_fill(scaled.lt(threshold), double.NegativeInfinity);
        }
        var probabilities = scaled.softmax(-1);
        if (options.TopP < 1)
        {
            // The nucleus (Holtzman et al. 2019): the most likely tokens until their mass reaches top-p, the first always kept.
            var (sorted, order) = probabilities.sort(descending: true);
            var before = sorted.cumsum(0) - sorted;                                        // mass of the more likely tokens
            var dropped = zeros_like(probabilities, dtype: ScalarType.Bool).index_put_(before.ge(options.TopP), order);
            probabilities = probabilities.masked_fill(dropped, 0);
        }
        return (int)multinomial(probabilities, 1, generator: random).item<long>();
    }
}
