using PeerSharp.Evaluation;

namespace PeerSharp.Layers;

/// <summary>
/// A layer that picks, per token, a few rows of a large table through product keys: PEER's experts and PKM's
/// memory values. The evaluator measures expert usage and unevenness (PEER.md "Metrics") of every such layer.
/// </summary>
public interface IExpertRetrieval
{
    /// <summary>When set, every forward adds its selections (ids and gates) to this tracker.</summary>
    ExpertUsage? Usage { get; set; }

    /// <summary>N, the number of rows (experts or memory values) the layer selects from.</summary>
    long ExpertCount { get; }
}
