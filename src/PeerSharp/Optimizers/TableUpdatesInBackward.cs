using PeerSharp.Config;
using PeerSharp.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// The optimizer of PEER's expert tables run inside the backward (<see cref="TrainConfig.UpdateInBackward"/>;
/// docs/SPARSE_UPDATES.md, "Update in the backward"): each PEER layer on the fused kernel hands the coalesced
/// gradient rows of its tables, as its backward reduces them, to the run's <see cref="SparseAdamW"/>, which
/// applies the row update at once; the rows are never stored as a gradient. The optimizer keeps its state and
/// step count, and its <see cref="IOptimizer.Step"/> then only advances the count for these tables.
/// <para>
/// Per step: <see cref="BeginStep"/> before the forward, with the step's scheduled rate; the backward; then
/// <see cref="ClipGlobalNorm"/> instead of <see cref="GradientClipping.ClipGlobalNorm(IEnumerable{TorchSharp.Modules.Parameter}, double, double)"/>, then the optimizer step.
/// Clipping to a global norm: the norm of the step is over every gradient, the tables' rows included, and clips
/// the stored gradients as usual; the table rows, updated before that norm is known, are scaled by the clip
/// factor of the previous step's norm (0 at a run's first step, whose tables then take no gradient), which the
/// optimizer state keeps, so a resumed run continues bit for bit. Without clipping the rows are not scaled.
/// </para>
/// </summary>
public sealed class TableUpdatesInBackward : IDisposable
{
    readonly IOptimizer _optimizer;
    readonly SparseAdamW _tables;
    readonly List<IDisposable> _layers;   // the layers' scopes with the updating step 5
    readonly double _maxNorm;

    TableUpdatesInBackward(IOptimizer optimizer, SparseAdamW tables, List<IDisposable> layers, double maxNorm) =>
        (_optimizer, _tables, _layers, _maxNorm) = (optimizer, tables, layers, maxNorm);

    /// <summary>
    /// Attaches the table part of <paramref name="optimizer"/> (built by <see cref="OptimizerFactory.Create"/> with
    /// <see cref="TrainConfig.UpdateInBackward"/>) to the PEER layers of <paramref name="model"/> until disposed,
    /// for a training that clips gradients to a global norm of <paramref name="maxNorm"/> (0: no clipping).
    /// Throws a <see cref="PeerSharpException"/> when the optimizer was built without the option or the model has
    /// no PEER layer on the fused kernel.
    /// </summary>
    public static TableUpdatesInBackward Attach(nn.Module model, IOptimizer optimizer, double maxNorm) => Attach(model, optimizer, maxNorm, null, 1);

    /// <summary>As the public overload, leaving the frozen rows of <paramref name="freeze"/> untouched; refuses more than one rank.</summary>
    internal static TableUpdatesInBackward Attach(nn.Module model, IOptimizer optimizer, double maxNorm, ParameterFreeze? freeze, int ranks)
    {
        if (ranks > 1)
            throw new PeerSharpException($"updateInBackward cannot train on {ranks} ranks: the ranks exchange the table gradients, which an update in the backward never stores; expected one process (or updateInBackward off)");
        var tables = (optimizer is CompositeOptimizer composite ? composite.Parts : [optimizer]).OfType<SparseAdamW>().SingleOrDefault(s => s.UpdatesInBackward)
            ?? throw new PeerSharpException("updateInBackward needs PEER tables on the fused kernel and the optimizer OptimizerFactory.Create builds for them with TrainConfig.UpdateInBackward set; this optimizer has no expert-table part that updates in the backward");
        var layers = RetrievalLayers.Of(model).Select(l => l.Layer).OfType<Peer>().Distinct()
                                     .Where(p => p.UsesFusedKernel && p.Tables.All(t => tables.Updates(t.Table))).ToList();
        if (layers.Count == 0)
            throw new PeerSharpException("updateInBackward is set, but the model has no PEER layer on the fused kernel (float32 on the CPU) whose tables it could update; expected such a layer (or updateInBackward off)");
        foreach (var (table, mask) in freeze?.FrozenTables ?? []) tables.FreezeRows(table, mask);
        var step = ExpertStep.UpdatingInBackward(tables);
        var scopes = layers.Select(layer => layer.Retrieval.Attach(c => c with { Experts = step })).ToList();
        return new TableUpdatesInBackward(optimizer, tables, scopes, maxNorm);
    }

    /// <summary>
    /// Before the step's forward: the tables' updates in the coming backward use step count + 1, this rate (or the
    /// tables' fixed rate) and the previous step's clip factor.
    /// </summary>
    public void BeginStep(double learningRate) =>
        _tables.BeginBackward(_optimizer is CompositeOptimizer composite ? composite.RateOf(_tables, learningRate) : learningRate,
                              _maxNorm > 0 ? _tables.GradientScale : 1);

    /// <summary>
    /// After the backward: the global gradient norm over the stored gradients and the table rows updated in the
    /// backward; clips the stored gradients to the maximum norm as <see cref="GradientClipping.ClipGlobalNorm(IEnumerable{TorchSharp.Modules.Parameter}, double, double)"/>
    /// does and keeps the clip factor for the next step's table rows. Returns the norm before clipping.
    /// </summary>
    public double ClipGlobalNorm(IEnumerable<Parameter> parameters)
    {
        var total = GradientClipping.ClipGlobalNorm(parameters, _maxNorm, _tables.EndBackward());
        _tables.GradientScale = GradientClipping.Scale(total, _maxNorm);
        return total;
    }

    /// <summary>Detaches: the layers store their table gradients again.</summary>
    public void Dispose()
    {
        _tables.EndBackward();
        foreach (var scope in _layers) scope.Dispose();
        _tables.ClearFrozenRows();
    }
}
