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

    /// <summary>Feed-forward put into the sparse blocks: "peer", "pkm", "moe" or "dense" (no replacement).</summary>
    public string SparseKind { get; init; } = FeedForwardKind.Peer;

    /// <summary>Blocks whose feed-forward is replaced: "middle" (the paper's setting), "all", "none" or a comma list of 0-based indices.</summary>
    public string SparseBlocks { get; init; } = "middle";

    /// <summary>
    /// Optional feed-forward of every block, a comma list with one kind per block (for example
    /// "dense,moe,peer,dense"); when set it replaces <see cref="SparseKind"/> and <see cref="SparseBlocks"/>.
    /// </summary>
    public string BlockKinds { get; init; } = "";

    /// <summary>Settings of every PEER layer; its ModelDim is taken from this config.</summary>
    public PeerOptions Peer { get; init; } = new() { SubKeyCount = 64, HeadCount = 4, TopK = 8, KeyDim = 64 };

    /// <summary>Settings of every MoE layer; its widths are taken from this config (each expert is a dense FFW).</summary>
    public MoeOptions Moe { get; init; } = new();

    /// <summary>Settings of every PKM layer; its ModelDim is taken from this config.</summary>
    public PkmOptions Pkm { get; init; } = new() { SubKeyCount = 64, KeyDim = 64 };

    /// <summary>The PEER options with this model's width.</summary>
    [JsonIgnore]
    public PeerOptions PeerLayer => Peer with { ModelDim = ModelDim };

    /// <summary>The MoE options with this model's widths.</summary>
    [JsonIgnore]
    public MoeOptions MoeLayer => Moe with { ModelDim = ModelDim, HiddenDim = FeedForwardMultiplier * ModelDim };

    /// <summary>The PKM options with this model's width.</summary>
    [JsonIgnore]
    public PkmOptions PkmLayer => Pkm with { ModelDim = ModelDim };

    /// <summary>The feed-forward kind of each block.</summary>
    public string[] FeedForwardKinds()
    {
        if (!string.IsNullOrWhiteSpace(BlockKinds))
        {
            var listed = BlockKinds.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (listed.Length != LayerCount)
                throw new PeerSharpException($"block kinds '{BlockKinds}' name {listed.Length} feed-forwards but the model has {LayerCount} blocks; expected one kind per block");
            foreach (var kind in listed) CheckKind(kind);
            return listed;
        }
        var kinds = Enumerable.Repeat(FeedForwardKind.Dense, LayerCount).ToArray();
        foreach (var block in SparseBlockIndices()) kinds[block] = SparseKind;
        return kinds;
    }

    static void CheckKind(string kind)
    {
        if (!FeedForwardKind.All.Contains(kind))
            throw new PeerSharpException($"feed-forward kind '{kind}' is not known; expected one of {string.Join(", ", FeedForwardKind.All)}");
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
        CheckKind(SparseKind);
        var kinds = FeedForwardKinds();
        if (kinds.Contains(FeedForwardKind.Peer)) PeerLayer.Validate();
        if (kinds.Contains(FeedForwardKind.Pkm)) PkmLayer.Validate();
        if (kinds.Contains(FeedForwardKind.Moe)) MoeLayer.Validate();
    }
}
