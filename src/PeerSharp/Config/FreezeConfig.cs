using PeerSharp.Model;

namespace PeerSharp.Config;

/// <summary>
/// What a run leaves untouched (DESIGN.md "Growth and freezing"): a frozen parameter or row is bit-identical after
/// training and its optimizer state does not move. Used after a growth (Growth/ExpertGrowth.cs) to keep what the model
/// learned before while new experts learn a new domain.
/// </summary>
public sealed record FreezeConfig
{
    /// <summary>
    /// n before growth: the experts (a, b) with a, b &lt; n (rows a·n2 + b of a layer grown to n2 sub-keys, not a
    /// contiguous prefix) of every PEER layer, and the same rows of every PKM value table, get no updates; null: none.
    /// </summary>
    public int? OldSubKeyCount { get; init; }

    /// <summary>
    /// H before a growth of the dense feed-forwards (Growth/HiddenGrowth.cs): hidden units 0…H−1 of every dense
    /// feed-forward (rows of fc.weight and fc.bias, columns of proj.weight) and its proj.bias get no updates, so only
    /// the new units learn there; null: none.
    /// </summary>
    public int? OldHiddenUnits { get; init; }

    /// <summary>The product keys (all sub-keys) of every PEER and PKM layer.</summary>
    public bool SubKeys { get; init; }

    /// <summary>
    /// The query networks of every PEER and PKM layer: W_q and the query BatchNorm, which then normalises with its
    /// running statistics in training too and leaves them as they are.
    /// </summary>
    public bool Queries { get; init; }

    /// <summary>Everything but the PEER and PKM layers: embeddings, attention, norms, dense and MoE feed-forwards.</summary>
    public bool Backbone { get; init; }

    /// <summary>Whether anything is frozen.</summary>
    public bool Any => OldSubKeyCount is not null || OldHiddenUnits is not null || SubKeys || Queries || Backbone;

    /// <summary>Throws a <see cref="PeerSharpException"/> when the old sub-key count does not fit the model's PEER and PKM layers.</summary>
    public void Validate(ModelConfig model)
    {
        if (OldHiddenUnits is { } units)
        {
            if (!model.FeedForwardKinds().Contains(FeedForwardKind.Dense))
                throw new PeerSharpException($"frozen old hidden units {units} need a dense feed-forward; the model has none");
            if (units < 1 || units > model.HiddenDim)
                throw new PeerSharpException($"frozen old hidden units {units} must be between 1 and the feed-forward's hidden width {model.HiddenDim}");
        }
        if (OldSubKeyCount is not { } old) return;
        var counts = SubKeyCounts(model);
        if (counts.Count == 0) throw new PeerSharpException($"frozen old sub-key count {old} needs a PEER or PKM layer; the model has none");
        foreach (var n in counts)
            if (old < 1 || old > n)
                throw new PeerSharpException($"frozen old sub-key count {old} must be between 1 and the layers' sub-key count n = {n}");
    }

    /// <summary>n of the model's PEER layers and of its PKM layers, for those it has.</summary>
    internal static List<int> SubKeyCounts(ModelConfig model)
    {
        var kinds = model.FeedForwardKinds();
        var counts = new List<int>();
        if (kinds.Contains(FeedForwardKind.Peer)) counts.Add(model.PeerOptions.SubKeyCount);
        if (kinds.Contains(FeedForwardKind.Pkm)) counts.Add(model.PkmOptions.SubKeyCount);
        return counts;
    }
}
