using PeerSharp.Evaluation;
using TorchSharp.Modules;

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

    /// <summary>The [N, d_model] tables a step touches only a few rows of, by state-dict name within the layer.</summary>
    IReadOnlyList<(string Name, Parameter Table)> Tables { get; }

    /// <summary>
    /// Whether the tables' gradients are row-sparse (touched rows only), so that <see cref="Training.SparseAdamW"/>
    /// updates them; otherwise they are dense and take the ordinary AdamW.
    /// </summary>
    bool SparseTableGradients { get; }
}
