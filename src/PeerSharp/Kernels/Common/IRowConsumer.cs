namespace PeerSharp.Kernels;

/// <summary>
/// Takes each row <see cref="RowGroups.Reduce"/> has just reduced, instead of the rows being stored: PEER's
/// table update in the backward (Optimizer/TableRowUpdate.cs) is one. Declared here so that
/// Common, which every kernel folder uses, uses none of them. Runs on the reducing workers, inside the backward:
/// it must not throw.
/// </summary>
internal unsafe interface IRowConsumer
{
    /// <summary>Row <paramref name="row"/> (group <paramref name="group"/> of the reduction) with its reduced gradient of d floats.</summary>
    void Apply(int group, long row, float* gradient);
}
