using PeerSharp.Layers;

namespace PeerSharp.Model;

/// <summary>
/// Exact FLOP and parameter accounting from a model's config, so that models of different kinds can be trained
/// on equal compute budgets (the paper's isoFLOP comparison, the paper's Table 1).
/// <para>
/// Conventions. A multiply-add is 2 FLOPs (Kaplan et al. 2020; Hoffmann et al. 2022). Matrix products are
/// counted; norms, activations, softmaxes, biases and residual additions are not (Kaplan et al. 2020, §2.1).
/// Product-key selection has no matrix product, so its work is counted as 1 FLOP per candidate sum and per element
/// a top-k scans. Attention counts the whole T × T score matrix at the model's context length T, for the scores
/// and for the weighted sum of values (Hoffmann et al. 2022, App. F); a causal kernel may skip about half.
/// MoE experts are counted at their capacity: every slot an expert has is computed, filled or not. Training is
/// 3 × forward: the backward pass costs twice the forward.
/// </para>
/// </summary>
public static class FlopCounter
{
    /// <summary>FLOPs per multiply-add.</summary>
    public const double FlopsPerMultiplyAdd = 2;

    /// <summary>Training FLOPs per forward FLOP.</summary>
    public const double TrainingPerForward = 3;

    /// <summary>Forward FLOPs per token by part, and the parameter counts, of the model a config describes.</summary>
    public static FlopReport Of(ModelConfig config)
    {
        config.Validate();
        double d = config.ModelDim, V = config.VocabSize, T = config.ContextLength, L = config.LayerCount;
        var lines = new List<FlopLine>
        {
            new("output head (logits)", FlopsPerMultiplyAdd * d * V, true),
            new($"attention projections, {L} blocks", L * FlopsPerMultiplyAdd * 4 * d * d, true),
            new($"attention T × T (T = {T}), {L} blocks", L * FlopsPerMultiplyAdd * 2 * T * d, true),
        };
        var kinds = config.FeedForwardKinds();
        var denseBlocks = kinds.Count(k => k == FeedForwardKind.Dense);
        if (denseBlocks > 0)
            lines.Add(new($"dense feed-forward, {denseBlocks} blocks", denseBlocks * FeedForward(config, FeedForwardKind.Dense).Sum(l => l.Flops), true));
        for (int block = 0; block < kinds.Length; block++)
            if (kinds[block] != FeedForwardKind.Dense)
                lines.AddRange(FeedForward(config, kinds[block]).Select(l => l with { Part = $"block {block} {l.Part}" }));
        var (total, active) = Parameters(config);
        return new FlopReport(lines, total, active, config.ContextLength);
    }

    /// <summary>Forward FLOPs per token of one block's feed-forward of the given kind, by part.</summary>
    public static IReadOnlyList<FlopLine> FeedForward(ModelConfig config, FeedForwardKind kind)
    {
        double d = config.ModelDim;
        switch (kind)
        {
            case FeedForwardKind.Dense:
                return [new("dense feed-forward", DenseFeedForward(config.ModelDim, config.HiddenDim), true)];
            case FeedForwardKind.Moe:
                var moe = config.MoeOptions;
                return
                [
                    new("MoE router", FlopsPerMultiplyAdd * d * moe.ExpertCount, true),
                    new($"MoE experts ({moe.ExpertsPerToken:0.##} × dense FFW)", moe.ExpertsPerToken * DenseFeedForward(config.ModelDim, config.HiddenDim), true),
                ];
            case FeedForwardKind.Pkm:
                var pkm = config.PkmOptions;
                return
                [
                    .. Retrieval("PKM", config.ModelDim, pkm),
                    new($"PKM values (h·k = {pkm.HeadCount * pkm.TopK})", FlopsPerMultiplyAdd * pkm.HeadCount * pkm.TopK * d, true),
                ];
            case FeedForwardKind.Peer:
                return Peer(config.ModelDim, config.PeerOptions);
            default:
                throw new PeerSharpException($"feed-forward kind {kind} is not known; expected one of {string.Join(", ", EnumNames.All<FeedForwardKind>())}");
        }
    }

    /// <summary>Forward FLOPs per token of one PEER layer of width <paramref name="modelDim"/>, by part.</summary>
    public static IReadOnlyList<FlopLine> Peer(int modelDim, PeerOptions peer) =>
    [
        .. Retrieval("PEER", modelDim, peer),
        // Each selected expert: u_i · x, then g · σ · v_i added into the output.
        new($"PEER experts (h·k = {peer.HeadCount * peer.TopK})", FlopsPerMultiplyAdd * 2 * peer.HeadCount * peer.TopK * modelDim, true),
    ];

    /// <summary>Forward FLOPs per token of a GELU feed-forward d → hidden → d (two matrix products).</summary>
    public static double DenseFeedForward(int modelDim, int hiddenDim) => FlopsPerMultiplyAdd * 2.0 * modelDim * hiddenDim;

    /// <summary>
    /// The hidden width of the dense feed-forward whose matrix products cost what the PEER layer's do per token
    /// (the benchmarks' "dense FFW of equal FLOPs"; product-key selection, which is no matrix product, left out).
    /// </summary>
    public static int EqualFlopsHiddenDim(int modelDim, PeerOptions peer) =>
        (int)Math.Round(Peer(modelDim, peer).Where(l => l.MatrixProducts).Sum(l => l.Flops) / DenseFeedForward(modelDim, 1));

    /// <summary>Product-key retrieval, shared by PEER and PKM (<see cref="ProductKeyRetrieval"/>).</summary>
    static FlopLine[] Retrieval(string layer, double d, ProductKeyOptions o) => Retrieval(layer, d, o.HeadCount, o.SubKeyCount, o.TopK, o.KeyDim);

    static FlopLine[] Retrieval(string layer, double d, double h, double n, double k, double keyDim) =>
    [
        new($"{layer} queries", FlopsPerMultiplyAdd * d * h * keyDim, true),
        // Each half of each head's query against its n sub-keys of d_key/2.
        new($"{layer} sub-key scores", FlopsPerMultiplyAdd * h * 2 * n * (keyDim / 2), true),
        // Per head: top-k of each half (2n elements scanned), k² candidate sums, top-k of the k² candidates.
        new($"{layer} k² candidates, top-k", h * (2 * n + 2 * k * k), false),
    ];

    /// <summary>Parameters of the model a config describes: all of them, and those one token's forward uses.</summary>
    public static (long Total, double Active) Parameters(ModelConfig config)
    {
        long d = config.ModelDim, V = config.VocabSize;
        long dense = V * d + 2 * d;                                               // token embedding, final norm
        if (config.Positions == PositionKind.Learned) dense += config.ContextLength * d;
        if (!config.TieEmbeddings) dense += V * d;
        dense += config.LayerCount * (4 * d * d + 4 * d + 4 * d);                // attention with biases, two norms
        long total = dense;
        double active = dense;
        foreach (var kind in config.FeedForwardKinds())
        {
            var (layerTotal, layerActive) = FeedForwardParameters(config, kind);
            total += layerTotal;
            active += layerActive;
        }
        return (total, active);
    }

    static (long Total, double Active) FeedForwardParameters(ModelConfig config, FeedForwardKind kind)
    {
        long d = config.ModelDim, H = config.HiddenDim;
        long denseFeedForward = 2 * d * H + H + d;
        switch (kind)
        {
            case FeedForwardKind.Dense:
                return (denseFeedForward, denseFeedForward);
            case FeedForwardKind.Moe:
                var moe = config.MoeOptions;
                long router = moe.ExpertCount * d;
                // Expert choice gives a token c experts on average, token choice its k (when none is dropped).
                var expertsPerToken = moe.Routing == MoeRouting.TokenChoice ? moe.TopK : moe.CapacityFactor;
                return (router + moe.ExpertCount * denseFeedForward, router + expertsPerToken * denseFeedForward);
            case FeedForwardKind.Pkm:
                var pkm = config.PkmOptions;
                var pkmRetrieval = RetrievalParameters(d, pkm);
                return (pkmRetrieval + pkm.ValueCount * d, pkmRetrieval + (double)pkm.HeadCount * pkm.TopK * d);
            case FeedForwardKind.Peer:
                var peer = config.PeerOptions;
                var peerRetrieval = RetrievalParameters(d, peer);
                return (peerRetrieval + 2L * peer.ExpertCount * d, peerRetrieval + 2.0 * peer.HeadCount * peer.TopK * d);
            default:
                throw new PeerSharpException($"feed-forward kind {kind} is not known; expected one of {string.Join(", ", EnumNames.All<FeedForwardKind>())}");
        }
    }

    // Query networks, BatchNorm gain and bias, the two sub-key sets of n × d_key/2, and cosine retrieval's temperature.
    static long RetrievalParameters(long d, ProductKeyOptions o) =>
        d * o.HeadCount * o.KeyDim + (o.QueryBatchNorm ? 2L * o.HeadCount * o.KeyDim : 0) + (long)o.SubKeyCount * o.KeyDim + (o.CosineKeys ? 1 : 0);
}
