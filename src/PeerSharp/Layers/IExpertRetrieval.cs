using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// A layer that picks, per token, a few rows of a large table through product keys: PEER's experts and PKM's
/// memory values. The evaluator attaches an <see cref="ISelectionObserver"/> (<see cref="ProductKeyRetrieval.Attach"/>) to measure expert usage and
/// unevenness (DESIGN.md "Metrics"); the optimizer factory finds the tables to update sparsely; the model adds the
/// retrieval's balance term, if any, to the training loss.
/// </summary>
public interface IExpertRetrieval : IAuxiliaryLoss
{
    /// <inheritdoc />
    Tensor? IAuxiliaryLoss.AuxiliaryLoss => Retrieval.BalanceLoss;

    /// <summary>N, the number of rows (experts or memory values) the layer selects from.</summary>
    long ExpertCount { get; }

    /// <summary>The product-key index the layer retrieves through.</summary>
    ProductKeyRetrieval Retrieval { get; }

    /// <summary>The [N, d_model] tables a step touches only a few rows of, by state-dict name within the layer.</summary>
    IReadOnlyList<(string Name, Parameter Table)> Tables { get; }

    /// <summary>
    /// Draws <paramref name="rows"/> (any number of rows of the table named <paramref name="table"/>, in place) from
    /// the table's initial distribution, as the constructor draws the whole table; rows are independent, so a table
    /// too large for memory can be drawn slice by slice as it is written (<c>FreshCheckpoint</c>).
    /// </summary>
    void InitialiseRows(string table, Tensor rows);

    /// <summary>
    /// Whether the tables' gradients are row-sparse (touched rows only), so that a sparse optimizer updates
    /// them; otherwise they are dense and take the ordinary AdamW.
    /// </summary>
    bool SparseTableGradients { get; }
}

/// <summary>Receives the selections of an <see cref="IExpertRetrieval"/> layer: attached from above (the evaluator), never imported by the layers.</summary>
public interface ISelectionObserver
{
    /// <summary>One forward's selections: ids [M, h, k] in [0, N) and their gates [M, h, k].</summary>
    void Observe(Tensor ids, Tensor gates);
}
