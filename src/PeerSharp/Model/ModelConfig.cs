using System.Text.Json.Serialization;
using PeerSharp.Layers;

namespace PeerSharp.Model;

/// <summary>
/// Shape of the decoder-only language model. Serialised as JSON in config files and checkpoint sidecars.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Tokenizer name ("byte" or "gpt2"); decides the vocabulary.</summary>
    public string Tokenizer { get; init; } = "byte";

    /// <summary>Vocabulary size; must match the tokenizer.</summary>
    public int VocabSize { get; init; } = 256;

    /// <summary>Longest sequence the model sees (learned positions have this many rows).</summary>
    public int ContextLength { get; init; } = 128;

    /// <summary>d_model, the residual stream width.</summary>
    public int ModelDim { get; init; } = 128;

    /// <summary>Number of transformer blocks.</summary>
    public int LayerCount { get; init; } = 4;

    /// <summary>Attention heads per block; must divide d_model.</summary>
    public int AttentionHeads { get; init; } = 4;

    /// <summary>Hidden width of a dense feed-forward, as a multiple of d_model (4 in GPT-2).</summary>
    public int FeedForwardMultiplier { get; init; } = 4;

    /// <summary>"learned" absolute position embeddings or "rotary" (RoPE on queries and keys).</summary>
    public string Positions { get; init; } = "learned";

    /// <summary>Whether the output head shares the token embedding's weights.</summary>
    public bool TieEmbeddings { get; init; } = true;

    /// <summary>Feed-forward put into the sparse blocks: "peer" or "dense" (no replacement).</summary>
    public string SparseKind { get; init; } = "peer";

    /// <summary>Blocks whose feed-forward is replaced: "middle" (the paper's setting), "all", "none" or a comma list of 0-based indices.</summary>
    public string SparseBlocks { get; init; } = "middle";

    /// <summary>Settings of every PEER layer; its ModelDim is taken from this config.</summary>
    public PeerOptions Peer { get; init; } = new() { SubKeyCount = 64, HeadCount = 4, TopK = 8, KeyDim = 64 };

    /// <summary>The PEER options with this model's width.</summary>
    [JsonIgnore]
    public PeerOptions PeerLayer => Peer with { ModelDim = ModelDim };

    /// <summary>The feed-forward kind of each block.</summary>
    public string[] FeedForwardKinds()
    {
        var kinds = Enumerable.Repeat("dense", LayerCount).ToArray();
        foreach (var block in SparseBlockIndices()) kinds[block] = SparseKind;
        return kinds;
    }

    IEnumerable<int> SparseBlockIndices()
    {
        switch (SparseBlocks.Trim().ToLowerInvariant())
        {
            case "middle": return [(LayerCount - 1) / 2];   // block 6 of 12 (1-based), as in the paper
            case "all": return Enumerable.Range(0, LayerCount);
            case "none" or "": return [];
        }
        var blocks = new List<int>();
        foreach (var part in SparseBlocks.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, out var block) || block < 0 || block >= LayerCount)
                throw new PeerSharpException($"sparse block '{part}' is not a block index between 0 and {LayerCount - 1}; expected 'middle', 'all', 'none' or a comma list of indices");
            blocks.Add(block);
        }
        return blocks;
    }

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (VocabSize <= 0) throw new PeerSharpException($"vocabulary size {VocabSize} must be positive");
        if (ContextLength <= 0) throw new PeerSharpException($"context length {ContextLength} must be positive");
        if (LayerCount <= 0) throw new PeerSharpException($"layer count {LayerCount} must be positive");
        if (ModelDim <= 0 || AttentionHeads <= 0 || ModelDim % AttentionHeads != 0)
            throw new PeerSharpException($"model dim {ModelDim} must be a positive multiple of the attention head count {AttentionHeads}");
        if (Positions is not ("learned" or "rotary"))
            throw new PeerSharpException($"positions '{Positions}' is not known; expected 'learned' or 'rotary'");
        if (Positions == "rotary" && (ModelDim / AttentionHeads) % 2 != 0)
            throw new PeerSharpException($"rotary positions need an even attention head width, not {ModelDim / AttentionHeads}");
        if (SparseKind is not ("peer" or "dense"))
            throw new PeerSharpException($"sparse layer kind '{SparseKind}' is not known; expected 'peer' or 'dense'");
        var kinds = FeedForwardKinds();
        if (kinds.Contains("peer")) PeerLayer.Validate();
    }
}
