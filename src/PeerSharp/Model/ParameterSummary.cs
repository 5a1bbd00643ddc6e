namespace PeerSharp.Model;

/// <summary>One line of a model's parameter count.</summary>
/// <param name="Part">What the parameters are for.</param>
/// <param name="Count">How many numbers.</param>
public sealed record ParameterGroup(string Part, long Count);

/// <summary>Counts a model's parameters by part (embeddings, attention, feed-forwards, PEER, PKM and MoE pieces).</summary>
public static class ParameterSummary
{
    /// <summary>Parameter counts grouped by part, in model order.</summary>
    public static IReadOnlyList<ParameterGroup> Of(TransformerLM model)
    {
        var groups = new List<ParameterGroup>();
        var kinds = model.Config.FeedForwardKinds();
        foreach (var (name, parameter) in model.named_parameters())
        {
            var part = PartOf(name, kinds);
            var index = groups.FindIndex(g => g.Part == part);
            if (index < 0) groups.Add(new ParameterGroup(part, parameter.numel()));
            else groups[index] = groups[index] with { Count = groups[index].Count + parameter.numel() };
        }
        return groups;
    }

    static string PartOf(string name, FeedForwardKind[] kinds)
    {
        var parts = name.Split('.');
        if (parts[0] != "blocks") return parts[0] switch
        {
            "tok_emb" => "token embedding (tied output head)",
            "pos_emb" => "position embedding",
            "head" => "output head",
            "ln_f" => "final norm",
            _ => parts[0],
        };
        var block = parts[1];
        var kind = EnumNames.Name(kinds[int.Parse(block)]).ToUpperInvariant();
        return parts[2] switch
        {
            "attn" => "attention (all blocks)",
            "ln_attn" or "ln_ffn" => "layer norms (all blocks)",
            "ffn" when parts[3] is "fc" or "proj" => "dense feed-forward (all dense blocks)",
            "ffn" when parts[3] is "down" or "up" => $"block {block} PEER experts (down, up)",
            "ffn" when parts[3] is "values" => $"block {block} PKM values",
            "ffn" when parts[3] is "query" or "query_norm" => $"block {block} {kind} queries (+BN)",
            "ffn" when parts[3] is "keys" => $"block {block} {kind} product keys",
            "ffn" when parts[3] is "router" => $"block {block} MoE router",
            "ffn" when parts[3] is "experts" => $"block {block} MoE experts",
            _ => $"block {block} {parts[2]}",
        };
    }
}
