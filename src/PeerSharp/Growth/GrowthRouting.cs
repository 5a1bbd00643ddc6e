using PeerSharp.Data;
using PeerSharp.Layers;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Growth;

/// <summary>How the selections of one PEER or PKM layer split between the experts that existed before growth and the grown ones.</summary>
/// <param name="Block">0-based block index.</param>
/// <param name="GrownShare">Fraction of the (token, head, slot) selections that are grown experts (a ≥ n or b ≥ n for the old n).</param>
/// <param name="TokensReachingGrown">Fraction of tokens with at least one grown expert among their h·k selections.</param>
public sealed record GrownRouting(int Block, double GrownShare, double TokensReachingGrown);

/// <summary>
/// Growth that routes (DESIGN.md "Growth that routes"): the placement of new sub-keys at the new domain's queries,
/// gated so that the old domain's selections stay as they were, and the measurement of where each domain's tokens
/// go after growth.
/// </summary>
public static class GrowthRouting
{
    /// <summary>
    /// The new sub-keys of every PEER and PKM layer of <paramref name="model"/> (the model before growth), in block
    /// order, [2, n2 − n, d_key/2] each, for <see cref="KeyPlacement.Queries"/>. Per layer and half, the half-queries
    /// (all heads pooled, since the heads share the sub-keys) of tokens sampled from the new domain are clustered into
    /// n2 − n centres. A centre c becomes a new sub-key in its direction ĉ with norm m ≤ ‖c‖, the largest for which
    /// every sampled old-domain half-query q with ĉ·q &gt; 0 scores it below (1 − margin) times its threshold
    /// (<see cref="Thresholds"/>): no such query then selects a grown expert, so its output is unchanged. A query whose
    /// threshold is not positive cannot be protected by scaling (a key near zero outscores it) and is left out of the
    /// bound; <see cref="Measure"/> shows what routing that leaves.
    /// Queries are those of evaluation mode (the query BatchNorm with its running statistics), where the old domain
    /// is scored.
    /// </summary>
    public static IReadOnlyList<Tensor> PlaceNewSubKeys(TransformerLM model, ModelConfig config, GrowthOptions options)
    {
        var layers = Layers(model);
        using var newDomain = TokenCorpus.Open(options.NewDomain!, config.Tokenizer);
        using var oldDomain = TokenCorpus.Open(options.OldDomain!, config.Tokenizer);
        var newQueries = SampledQueries(model, layers, newDomain, options.PlacementTokens);
        var oldQueries = SampledQueries(model, layers, oldDomain, options.PlacementTokens);
        try
        {
            var placed = new List<Tensor>();
            for (int i = 0; i < layers.Count; i++)
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var keys = layers[i].Retrieval.SubKeys.detach();                             // [2, n, d_key/2]
                long half = keys.shape[2];
                var old = oldQueries[i].narrow(-1, 0, half).reshape(-1, half);               // [P, d_key/2], P = M·h
                var old2 = oldQueries[i].narrow(-1, half, half).reshape(-1, half);
                var thresholds = Thresholds(old.matmul(keys[0].t()), old2.matmul(keys[1].t()), layers[i].Retrieval.TopK);
                var halves = new List<Tensor>();
                for (int s = 0; s < 2; s++)
                {
                    var fresh = newQueries[i].narrow(-1, s * half, half).reshape(-1, half);  // [M·h, d_key/2]
                    var centres = QueryClusters.Centres(fresh, options.SubKeyCount - (int)keys.shape[1], seed: 2 * i + s);
                    halves.Add(Gate(centres, s == 0 ? old : old2, thresholds[s], options.GateMargin, options.GateLeak));
                }
                placed.Add(stack(halves).MoveToOuterDisposeScope());
            }
            return placed;
        }
        finally
        {
            foreach (var q in newQueries.Concat(oldQueries)) q.Dispose();
        }
    }

    /// <summary>
    /// Each centre [c, d] scaled down along its direction until no old query [P, d] with a positive threshold [P] scores
    /// it above (1 − margin) times that threshold. → [c, d].
    /// </summary>
    internal static Tensor Gate(Tensor centres, Tensor oldQueries, Tensor thresholds, double margin, double leak = 0)
    {
        using var scope = NewDisposeScope();
        var norms = centres.norm(1, keepdim: true);                                                   // [c, 1]
        var directions = centres / norms.clamp_min(1e-12);                                            // [c, d]
        var projections = oldQueries.matmul(directions.t());                                          // [P, c]
        var binding = projections.gt(0).logical_and(thresholds.gt(0).unsqueeze(1));
        var allowed = where(binding, thresholds.unsqueeze(1) * (1 - margin) / projections, full_like(projections, double.PositiveInfinity));
        // leak 0: the smallest bound, every old query protected; otherwise the bound that a fraction leak of them exceed.
        long passing = (long)Math.Floor(leak * allowed.shape[0]);
        var bound = passing == 0 ? allowed.amin(0) : allowed.kthvalue(passing + 1, 0).values;           // [c]
        var scale = minimum(bound, norms.squeeze(1));                                                  // [c]
        return scope.MoveToOuter(directions * scale.unsqueeze(1));
    }

    /// <summary>
    /// Per half, the score below which a new sub-key cannot bring a grown expert into a query's top-k, from the
    /// old scores [P, n] of each half: T − max of the other half, T the k-th best old product-key score (over the k²
    /// candidates, as retrieval takes it). A new sub-key a' below it gives (a', b) at most s1[a'] + max s2 &lt; T; two
    /// new sub-keys below theirs give less than 2T − max s1 − max s2 ≤ T. So neither enters the top-k. → 2 × [P].
    /// </summary>
    internal static Tensor[] Thresholds(Tensor scores1, Tensor scores2, int topK)
    {
        using var scope = NewDisposeScope();
        var (best1, best2) = (scores1.topk(topK, dim: 1).values, scores2.topk(topK, dim: 1).values);   // [P, k], best first
        var candidates = (best1.unsqueeze(2) + best2.unsqueeze(1)).flatten(1);                        // [P, k²]
        var kth = candidates.topk(topK, dim: 1).values.select(1, topK - 1);                            // [P]: T
        return [scope.MoveToOuter(kth - best2.select(1, 0)), scope.MoveToOuter(kth - best1.select(1, 0))];
    }

    /// <summary>
    /// Where the tokens of <paramref name="corpus"/> (its first <paramref name="tokens"/>, as the evaluator reads them)
    /// go in a model grown from one of <paramref name="before"/>: per PEER and PKM layer, the share of selections that
    /// are grown experts and the share of tokens that reach one. Evaluation mode; the model's mode is restored.
    /// </summary>
    public static IReadOnlyList<GrownRouting> Measure(TransformerLM model, ModelConfig before, TokenCorpus corpus, int batchSize, long tokens)
    {
        var layers = Layers(model);
        var counters = layers.Select(l => new GrownCounter(l.ExpertCount, l is Peer ? before.PeerOptions.SubKeyCount : before.PkmOptions.SubKeyCount)).ToList();
        var wasTraining = model.training;
        model.eval();
        var observing = layers.Select((layer, i) => layer.Retrieval.Attach(c => c with { Observer = counters[i] })).ToList();
        try
        {
            using var noGrad = no_grad();
            foreach (var (input, target) in new SequentialBatches(corpus, batchSize, model.Config.ContextLength, Math.Min(tokens, corpus.TokenCount - 1)))
            {
                using var scope = NewDisposeScope();
                model.forward(input);
                input.Dispose();
                target.Dispose();
            }
        }
        finally
        {
            foreach (var scope in observing) scope.Dispose();
            model.train(wasTraining);
        }
        var blocks = model.Blocks.Select((b, index) => (b, index)).Where(p => p.b.FeedForward is IExpertRetrieval).Select(p => p.index).ToList();
        return [.. counters.Select((c, i) => new GrownRouting(blocks[i], c.GrownShare, c.TokensReachingGrown))];
    }

    /// <summary>Counts, over the selections it is shown, those of experts with a sub-key of either half at or above the old n.</summary>
    sealed class GrownCounter(long expertCount, int oldSubKeyCount) : ISelectionObserver
    {
        readonly long _n = (long)Math.Round(Math.Sqrt(expertCount));
        long _selections, _grown, _tokens, _reaching;

        public double GrownShare => _selections == 0 ? 0 : (double)_grown / _selections;

        public double TokensReachingGrown => _tokens == 0 ? 0 : (double)_reaching / _tokens;

        public void Observe(Tensor ids, Tensor gates)
        {
            using var scope = NewDisposeScope();
            var grown = ids.div(_n, rounding_mode: RoundingMode.floor).ge(oldSubKeyCount)
                           .logical_or(ids.remainder(_n).ge(oldSubKeyCount));                   // [M, h, k]
            var perToken = grown.reshape(grown.shape[0], -1);                                      // [M, h·k]
            _selections += perToken.numel();
            _grown += grown.sum().item<long>();
            _tokens += perToken.shape[0];
            _reaching += perToken.any(1).sum().item<long>();
        }
    }

    /// <summary>
    /// The evaluation-mode queries [M, h, d_key] of every layer for <paramref name="tokens"/> tokens sampled from
    /// <paramref name="corpus"/> (windows at seeded random places, as training samples them), captured at each layer's input.
    /// </summary>
    static List<Tensor> SampledQueries(TransformerLM model, IReadOnlyList<IExpertRetrieval> layers, TokenCorpus corpus, long tokens)
    {
        const int batchSize = 16;
        int context = model.Config.ContextLength;
        var captured = layers.Select(_ => new List<Tensor>()).ToList();
        var hooks = layers.Select((layer, i) => ((nn.Module<Tensor, Tensor>)layer).register_forward_pre_hook((_, input) =>
        {
            captured[i].Add(layer.Retrieval.Queries(input.reshape(-1, input.shape[^1])).detach().DetachFromDisposeScope());
            return input;
        })).ToList();
        var wasTraining = model.training;
        model.eval();
        try
        {
            var sampler = new BatchSampler(corpus, batchSize, context, seed: 0);
            using var noGrad = no_grad();
            for (long step = 0; step * batchSize * context < tokens; step++)
            {
                using var scope = NewDisposeScope();
                model.forward(sampler.Batch(step).input);
            }
            return [.. captured.Select(parts => cat(parts, 0))];
        }
        finally
        {
            foreach (var hook in hooks) hook.remove();
            foreach (var part in captured.SelectMany(p => p)) part.Dispose();
            model.train(wasTraining);
        }
    }

    static List<IExpertRetrieval> Layers(TransformerLM model) => [.. model.Blocks.Select(b => b.FeedForward).OfType<IExpertRetrieval>()];
}
