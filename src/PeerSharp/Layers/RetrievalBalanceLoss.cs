using PeerSharp.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// The unweighted balance terms of <see cref="RetrievalBalance"/> (DESIGN.md "Keeping experts alive"): Switch's
/// load-balancing loss (Fedus et al. 2021, eq. 4) carried over to product keys, 1 when the selections and the
/// batch-mean probabilities are uniform and growing as retrieval crowds onto few sub-keys or rows, with only the
/// probabilities carrying a gradient (into the queries and sub-keys), as in Switch; and σ-MoE's entropy regulariser
/// on the batch-mean probabilities over the rows, 0 when they are uniform.
/// </summary>
public static class RetrievalBalanceLoss
{
    /// <summary>
    /// Tokens the mean probabilities are estimated from, evenly strided over the batch: the joint term's [h, n, n]
    /// product costs h·n²·(tokens), which at n = 1024 and all 2,048 tokens of a step would cost more than the step.
    /// </summary>
    public const int SampledTokens = 256;

    /// <summary>
    /// The term. queries: [M, h, d_key] as scored; subKeys: [2, n, d_key/2] as scored; pairs: [M, h, k] the selected
    /// a·n + b (before any head rotation). With <paramref name="replicas"/> of P ranks, each holding an equal share of the
    /// global batch (a data-parallel training), the fractions and the mean probabilities are those of the global batch,
    /// summed over the ranks differentiably, so P ranks compute the term one process computes on the whole batch (the
    /// same sample, where a rank's share is a multiple of the stride). Returns a scalar.
    /// </summary>
    public static Tensor Of(RetrievalBalance balance, Tensor queries, Tensor subKeys, Tensor pairs, ICommunicator? replicas = null)
    {
        using var scope = NewDisposeScope();
        long M = queries.shape[0], h = queries.shape[1], n = subKeys.shape[1], k = pairs.shape[2];
        int ranks = replicas?.Size ?? 1;
        Tensor OverRanks(Tensor local) => ranks > 1 ? ReplicaSum.Apply(local, replicas!) : local;
        var stride = Math.Max(1, M * ranks / SampledTokens);                        // the stride one process takes over the global batch
        var sample = queries.slice(0, 0, M, stride);                                 // [S, h, d_key]
        double sampled = ranks > 1 ? replicas!.AllGather(sample.shape[0]).Sum() : sample.shape[0];
        var halves = sample.chunk(2, dim: -1);                                       // 2 × [S, h, d_key/2]
        var p1 = halves[0].matmul(subKeys[0].t()).softmax(-1);                      // [S, h, n]: softmax over C
        var p2 = halves[1].matmul(subKeys[1].t()).softmax(-1);                      // [S, h, n]: softmax over C'
        var head = arange(h, dtype: ScalarType.Int64).view(1, -1, 1);              // [1, h, 1]
        var selections = (double)(M * ranks * k);                                    // per head, over the global batch
        Tensor loss;
        if (balance == RetrievalBalance.Halves)
        {
            var a = pairs.div(n, rounding_mode: RoundingMode.floor);                // [M, h, k]
            var b = pairs.remainder(n);
            var f1 = OverRanks(Counts(head * n + a, h * n, p1.dtype)).view(h, n) / selections;   // [h, n]
            var f2 = OverRanks(Counts(head * n + b, h * n, p1.dtype)).view(h, n) / selections;
            var (P1, P2) = (OverRanks(p1.sum([0])) / sampled, OverRanks(p2.sum([0])) / sampled);   // [h, n] each
            // n · Σ_a f_a P_a per half and head, averaged over both.
            loss = n * ((f1 * P1).sum() + (f2 * P2).sum()) / (2.0 * h);
        }
        else
        {
            long N = n * n;
            // P_(a,b) = mean_t p1[t, a] · p2[t, b]: the softmax over all n² keys of s1[a] + s2[b] factorises.
            var joint = OverRanks(p1.permute(1, 2, 0).bmm(p2.permute(1, 0, 2))) / sampled;        // [h, n, n]
            if (balance == RetrievalBalance.Entropy)
                // KL(P ‖ uniform) per head, averaged: log N + Σ P log P (a P of 0 adds 0; the clamp only keeps log finite).
                loss = Math.Log(N) + (joint * joint.clamp_min(1e-30).log()).sum() / h;
            else
            {
                var f = OverRanks(Counts(head * N + pairs, h * N, p1.dtype)) / selections;      // [h·N]
                loss = N * (f * joint.reshape(-1)).sum() / h;
            }
        }
        return scope.MoveToOuter(loss);
    }

    /// <summary>How many of the selections name each of <paramref name="size"/> (head, index) slots. [size].</summary>
    static Tensor Counts(Tensor slots, long size, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var flat = slots.reshape(-1);
        return scope.MoveToOuter(zeros(size, dtype: dtype).index_add_(0, flat, ones(flat.shape[0], dtype: dtype), alpha: 1));
    }
}
