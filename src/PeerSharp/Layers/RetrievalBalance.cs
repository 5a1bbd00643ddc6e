namespace PeerSharp.Layers;

/// <summary>Which balance term a product-key layer adds to the training loss (<see cref="ProductKeyOptions.Balance"/>).</summary>
public enum RetrievalBalance
{
    /// <summary>None, as in the paper.</summary>
    None,
    /// <summary>
    /// Switch's load-balancing loss (Fedus et al. 2021, eq. 4) on each half's sub-keys: n · Σ_a f_a · P_a per half and
    /// head, f_a the fraction of the head's selections whose first (second) half is a, P_a the batch-mean softmax of
    /// that half's sub-key scores.
    /// </summary>
    Halves,
    /// <summary>
    /// The same loss on the N rows themselves, N · Σ_i f_i · P_i per head: the softmax over all n² product keys
    /// factorises into the two halves' softmaxes, P_(a,b) = mean over tokens of p1_a · p2_b, so it needs no N-sized
    /// score tensor per token. It penalises crowded pairs (a, b), not only crowded sub-keys.
    /// </summary>
    Joint,
    /// <summary>
    /// An entropy regulariser on the router, as σ-MoE regularises the entropy of its batch-mean expert distribution
    /// (Csordás et al. 2023), taken over the N rows: per head, KL(P ‖ uniform) = log N + Σ_i P_i log P_i with P the
    /// batch-mean softmax over all n² product keys (the same factorised P as <see cref="Joint"/>). It is 0 when P is
    /// uniform and needs no selection counts: it spreads the probabilities, not the top-k choices directly.
    /// </summary>
    Entropy,
}
