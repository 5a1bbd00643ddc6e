using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Tests.Model;

/// <summary>A transformer small enough for exhaustive checks, with PEER in every block.</summary>
static class TinyModel
{
    public static ModelConfig Config(PositionKind positions) => new()
    {
        ModelDim = 32,
        LayerCount = 2,
        AttentionHeads = 2,
        ContextLength = 16,
        Positions = positions,
        SparseBlocks = "all",
        PeerOptions = new PeerOptions { SubKeyCount = 8, HeadCount = 2, TopK = 2, KeyDim = 8 },
    };

    /// <summary>A seed per position kind (the lengths of their names, as the tests have always used).</summary>
    public static int Seed(PositionKind positions) => positions == PositionKind.Learned ? 7 : 6;
}
