using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// The hook through which a fused backward hands a table's coalesced gradient rows to its optimizer instead of
/// storing them (docs/SPARSE_UPDATES.md, "Update in the backward"). A layer holds one, set from above by the
/// training (Optimizers/TableUpdatesInBackward.cs), since kernels and layers import nothing of the optimizers.
/// Both calls run inside libtorch's backward, where an exception would end the process: they must not throw.
/// </summary>
internal interface ITableUpdate
{
    /// <summary>
    /// The update of <paramref name="table"/>'s rows for the backward now running, over <paramref name="rowCount"/>
    /// touched rows; null when this table's gradient is to be stored as usual.
    /// </summary>
    TableRowUpdate? Begin(Tensor table, int rowCount);

    /// <summary>Called once every row of <paramref name="update"/> was applied; takes it over (and disposes it).</summary>
    void End(TableRowUpdate update);
}
