using System.Text.Json.Serialization;
using PeerSharp.Data;
using PeerSharp.Layers;

namespace PeerSharp.Model;

/// <summary>
/// Shape of the decoder-only language model: everything needed to build it, resolved once (preset, then config
/// file, then command line) and passed down. Layers get their width from here as a constructor argument;
/// nothing is filled in later. Serialised as JSON in config files and checkpoint sidecars.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Largest context length, model width or layer count accepted: far beyond what a CPU trains, small enough that sizes never overflow.</summary>
    public const int MaxDimension = 65536;

    /// <summary>Largest vocabulary accepted (GPT-2's is 50,257).</summary>
    public const int MaxVocabSize = 1 << 20;

    /// <summary>The tokenizer; decides the vocabulary.</summary>
    public TokenizerKind Tokenizer { get; init; } = TokenizerKind.Byte;

    /// <summary>Vocabulary size; at least the tokenizer's.</summary>
    public int VocabSize { get; init; } = 256;

    /// <summary>Longest sequence the model sees (learned positions have this many rows).</summary>
    public int ContextLength { get; init; } = 128;

    /// <summary>d_model, the residual stream width.</summary>
    public int ModelDim { get; init; } = 128;

    /// <summary>Number of transformer blocks.</summary>
    public int LayerCount { get; init; } = 4;

    /// <summary>Attention heads per block; must divide d_model.</summary>
    public int AttentionHeads { get; init; } = 4;

    /// <summary>Hidden width of a dense feed-forward (and of each MoE expert), as a multiple of d_model (4 in GPT-2).</summary>
    public int FeedForwardMultiplier { get; init; } = 4;

    /// <summary>Learned absolute position embeddings or rotary ones.</summary>
    public PositionKind Positions { get; init; } = PositionKind.Learned;

    /// <summary>Whether the output head shares the token embedding's weights.</summary>
    public bool TieEmbeddings { get; init; } = true;

    /// <summary>The feed-forward of the blocks <see cref="SparseBlocks"/> names (`--ffn`); the other blocks are dense.</summary>
    public FeedForwardKind FeedForward { get; init; } = FeedForwardKind.Peer;

    /// <summary>Blocks whose feed-forward is <see cref="FeedForward"/>: "middle" (the paper's setting), "all", "none" or a comma list of 0-based indices.</summary>
    public string SparseBlocks { get; init; } = "middle";

    /// <summary>
    /// Optional feed-forward of every block, a comma list with one kind per block (for example
    /// "dense,moe,peer,dense"); when set it replaces <see cref="FeedForward"/> and <see cref="SparseBlocks"/>.
    /// </summary>
    public string BlockKinds { get; init; } = "";

    /// <summary>Settings of every PEER layer (JSON "peer").</summary>
    [JsonPropertyName("peer")]
    public PeerOptions PeerOptions { get; init; } = new() { SubKeyCount = 64, HeadCount = 4, TopK = 8, KeyDim = 64 };

    /// <summary>Settings of every MoE layer (JSON "moe"); each expert is a dense FFW of <see cref="HiddenDim"/>.</summary>
    [JsonPropertyName("moe")]
    public MoeOptions MoeOptions { get; init; } = new();

    /// <summary>Settings of every PKM layer (JSON "pkm").</summary>
    [JsonPropertyName("pkm")]
    public PkmOptions PkmOptions { get; init; } = new() { SubKeyCount = 64, KeyDim = 64 };

    /// <summary>Hidden width of a dense feed-forward and of each MoE expert.</summary>
    [JsonIgnore]
    public int HiddenDim => FeedForwardMultiplier * ModelDim;

    /// <summary>
    /// Bytes of the model's parameters: 4 per parameter, but 2 per weight of PEER tables stored in bfloat16
    /// (<see cref="Layers.PeerOptions.TableStorage"/>). The size of its model file, give or take the header.
    /// </summary>
    public long ParameterBytes()
    {
        long bytes = FlopCounter.Parameters(this).Total * 4L;
        if (PeerOptions.TableStorage == Kernels.ExpertTableStorage.BFloat16)
            bytes -= FeedForwardKinds().Count(k => k == FeedForwardKind.Peer) * 2L * PeerOptions.ExpertCount * ModelDim * 2L;   // two tables [N, d] per layer
        return bytes;
    }

    /// <summary>The feed-forward kind of each block.</summary>
    public FeedForwardKind[] FeedForwardKinds()
    {
        if (!string.IsNullOrWhiteSpace(BlockKinds))
        {
            var listed = BlockKinds.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                                   .Select(kind => EnumNames.Parse<FeedForwardKind>(kind, "feed-forward kind")).ToArray();
            if (listed.Length != LayerCount)
                throw new PeerSharpException($"block kinds '{BlockKinds}' name {listed.Length} feed-forwards but the model has {LayerCount} blocks; expected one kind per block");
            return listed;
        }
        var kinds = Enumerable.Repeat(FeedForwardKind.Dense, LayerCount).ToArray();
        foreach (var block in SparseBlockIndices()) kinds[block] = FeedForward;
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
        CheckSections("model config");
        if (!Enum.IsDefined(Tokenizer)) throw new PeerSharpException($"tokenizer {(int)Tokenizer} is not known; expected {string.Join(", ", EnumNames.All<TokenizerKind>())}");
        var tokens = Tokenizers.VocabSize(Tokenizer);
        if (VocabSize < tokens || VocabSize > MaxVocabSize)
            throw new PeerSharpException($"vocabulary size {VocabSize} must be at least the {EnumNames.Name(Tokenizer)} tokenizer's {tokens} and at most {MaxVocabSize}");
        CheckRange("context length", ContextLength, 1, MaxDimension);
        CheckRange("layer count", LayerCount, 1, 1024);
        CheckRange("model dim", ModelDim, 1, MaxDimension);
        CheckRange("feed-forward multiplier", FeedForwardMultiplier, 1, 64);
        if (AttentionHeads <= 0 || ModelDim % AttentionHeads != 0)
            throw new PeerSharpException($"model dim {ModelDim} must be a positive multiple of the attention head count {AttentionHeads}");
        if (!Enum.IsDefined(Positions)) throw new PeerSharpException($"positions {(int)Positions} is not known; expected {string.Join(", ", EnumNames.All<PositionKind>())}");
        if (Positions == PositionKind.Rotary && (ModelDim / AttentionHeads) % 2 != 0)
            throw new PeerSharpException($"rotary positions need an even attention head width, not {ModelDim / AttentionHeads}");
        if (!Enum.IsDefined(FeedForward)) throw new PeerSharpException($"feed-forward kind {(int)FeedForward} is not known; expected {string.Join(", ", EnumNames.All<FeedForwardKind>())}");
        var kinds = FeedForwardKinds();
        if (kinds.Contains(FeedForwardKind.Peer)) PeerOptions.Validate();
        if (kinds.Contains(FeedForwardKind.Pkm)) PkmOptions.Validate();
        if (kinds.Contains(FeedForwardKind.Moe)) MoeOptions.Validate();
    }

    /// <summary>
    /// Throws a <see cref="PeerSharpException"/> when the model cannot fit in this machine's memory, before libtorch
    /// tries to allocate it: its parameters as 32-bit floats and, for <paramref name="training"/>, AdamW's two moments,
    /// against the memory .NET may use (the machine's, or the container's limit). Gradients and activations are left
    /// out, so only sizes that cannot work are refused.
    /// </summary>
    public void CheckFitsInMemory(bool training)
    {
        var parameters = FlopCounter.Parameters(this).Total;
        var bytes = ParameterBytes() + (training ? parameters * 8.0 : 0);
        var available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (available > 0 && bytes > available)
            throw new PeerSharpException($"the model's {parameters:N0} parameters need {bytes / 1e9:N1} GB{(training ? " to train (weights and AdamW's two moments)" : "")} but this machine has {available / 1e9:N1} GB; expected a smaller model (--d-model, --layers, --experts){(training ? "" : ", or --map-tables to read the expert tables from the checkpoint file instead of memory")}");
    }

    /// <summary>Throws when a section is null (a config file's "peer": null), before anything reads it; <paramref name="source"/> names the file.</summary>
    internal void CheckSections(string source)
    {
        var (section, expected) = PeerOptions is null ? ("peer", "an object")
            : MoeOptions is null ? ("moe", "an object")
            : PkmOptions is null ? ("pkm", "an object")
            : SparseBlocks is null ? ("sparseBlocks", "a string")
            : BlockKinds is null ? ("blockKinds", "a string")
            : (null, null);
        if (section is not null) throw new PeerSharpException($"{source} sets \"model.{section}\" to null; expected {expected}");
    }

    static void CheckRange(string what, int value, int min, int max)
    {
        if (value < min || value > max) throw new PeerSharpException($"{what} {value} must be between {min} and {max}");
    }
}
