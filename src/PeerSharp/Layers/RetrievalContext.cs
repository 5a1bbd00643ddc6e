using PeerSharp.Distributed;

namespace PeerSharp.Layers;

/// <summary>
/// What a caller above the layers (the evaluator, the training step, expert parallelism, the generator) attaches to a
/// product-key layer for a while, through the one scoped API <see cref="ProductKeyRetrieval.Attach"/>: the layers
/// never import the code that observes or trains them. Immutable; the default attaches nothing.
/// </summary>
public sealed record RetrievalContext
{
    /// <summary>Nothing attached: the layer as built.</summary>
    public static RetrievalContext None { get; } = new();

    /// <summary>When set, every forward reports its selections (ids and gates) to it (the evaluator's expert usage).</summary>
    public ISelectionObserver? Observer { get; init; }

    /// <summary>
    /// The ranks of a data-parallel training: the query BatchNorm then normalises with the statistics of the whole
    /// global batch, over every rank's tokens, so P ranks compute what one process computes on the whole batch
    /// (DESIGN.md "Distributed training"), and so does the balance term.
    /// </summary>
    public ICommunicator? Replicas { get; init; }

    /// <summary>
    /// Whether the query BatchNorm normalises with its running statistics in training too, leaving them unchanged:
    /// set for frozen query networks (FreezeConfig.Queries), which then compute the same function in training and
    /// evaluation, the one they had learned.
    /// </summary>
    public bool QueryStatisticsFrozen { get; init; }

    /// <summary>
    /// PEER's step 5 when it is not the layer's own choice (expert parallelism's exchange with the ranks,
    /// the fused kernel with the tables' update in the backward); null: fused where it can run, else plain.
    /// </summary>
    public ExpertStep? Experts { get; init; }

    /// <summary>
    /// <paramref name="current"/> with what this context changed from <paramref name="before"/> put back, each setting
    /// on its own: scopes that overlap without nesting (a training's and an evaluation's) leave each other's settings.
    /// </summary>
    internal RetrievalContext Undo(RetrievalContext current, RetrievalContext before) => current with
    {
        Observer = ReferenceEquals(current.Observer, Observer) ? before.Observer : current.Observer,
        Replicas = ReferenceEquals(current.Replicas, Replicas) ? before.Replicas : current.Replicas,
        QueryStatisticsFrozen = current.QueryStatisticsFrozen == QueryStatisticsFrozen ? before.QueryStatisticsFrozen : current.QueryStatisticsFrozen,
        Experts = ReferenceEquals(current.Experts, Experts) ? before.Experts : current.Experts,
    };
}
