using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// A <see cref="FreezeConfig"/> applied to a model for one run (DESIGN.md "Growth and freezing"). Whole parameters
/// (sub-keys, query networks, the backbone) stop requiring gradients, so no optimizer moves them or their moments.
/// Frozen expert rows are a mask consulted before every update, kept apart from the optimizers: a row-sparse
/// gradient loses its frozen rows before clipping (so they neither count in the norm nor get updated, at a cost
/// proportional to the touched rows), and a dense one has them zeroed, after which the rows and their optimizer
/// state are put back as they were, since dense AdamW would still decay and move them.
/// </summary>
sealed class ParameterFreeze : IDisposable
{
    /// <summary>
    /// One parameter with frozen slices along <paramref name="Dim"/>: its full name, the mask over that dimension and
    /// the frozen ids [F]. Expert tables (<paramref name="Expert"/>) freeze rows (dim 0); a grown dense feed-forward
    /// freezes its old units, rows of fc and columns (dim 1) of proj.
    /// </summary>
    sealed record FrozenRows(string Name, Parameter Table, Tensor Mask, Tensor Ids, long Dim = 0, bool Expert = true);

    readonly IOptimizer _optimizer;
    readonly List<FrozenRows> _tables;
    readonly List<IDisposable> _frozenStatistics;   // the query BatchNorms' scopes
    readonly List<(Tensor Destination, Tensor Ids, long Dim, Tensor Saved)> _saved = [];

    ParameterFreeze(IOptimizer optimizer, List<FrozenRows> tables, List<IDisposable> frozenStatistics) =>
        (_optimizer, _tables, _frozenStatistics) = (optimizer, tables, frozenStatistics);

    /// <summary>Freezes what <paramref name="freeze"/> names in <paramref name="model"/>; null when nothing is frozen.</summary>
    public static ParameterFreeze? Apply(nn.Module model, IOptimizer optimizer, FreezeConfig freeze)
    {
        if (!freeze.Any) return null;
        var layers = RetrievalLayers.Of(model);
        var parameters = model.named_parameters().ToList();
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
        {
            // Names within a layer (DESIGN.md "Parameter contract"): keys, query.weight, query_norm.*, and the tables.
            var local = layers.Select(l => l.name.Length == 0 ? name : name.StartsWith(l.name + ".", StringComparison.Ordinal) ? name[(l.name.Length + 1)..] : null)
                              .FirstOrDefault(n => n is not null);
            var frozen = local is null ? freeze.Backbone
                : (local == "keys" && freeze.SubKeys) || (local.StartsWith("query", StringComparison.Ordinal) && freeze.Queries);
            if (frozen) parameter.requires_grad_(false);
        }
        var scopes = freeze.Queries
            ? layers.Select(l => l.Layer).Distinct().Select(layer => layer.Retrieval.Attach(c => c with { QueryStatisticsFrozen = true })).ToList()
            : [];

        var tables = new List<FrozenRows>();
        if (freeze.OldSubKeyCount is { } old)
            foreach (var (prefix, layer) in layers.DistinctBy(l => l.Layer))
            {
                long n = layer.Retrieval.SubKeys.shape[1];
                using var ids = arange(layer.ExpertCount, dtype: ScalarType.Int64);                // [N]: a·n + b
                using var mask = (ids.div(n, rounding_mode: RoundingMode.floor) < old).logical_and_(ids.remainder(n) < old);
                foreach (var (name, table) in layer.Tables)
                    tables.Add(new FrozenRows(RetrievalLayers.Prefixed(prefix, name), table, mask.clone(), mask.nonzero().view(-1)));
            }
        if (freeze.OldHiddenUnits is { } units)
            foreach (var (name, module) in model.named_modules())
            {
                if (module is not DenseFeedForward) continue;
                var owned = module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
                long hidden = owned["fc.weight"].shape[0];
                using var ids = arange(hidden, dtype: ScalarType.Int64);
                using var mask = ids < units;                                                       // [H2]: the old units
                foreach (var (local, dim) in new[] { ("fc.weight", 0L), ("fc.bias", 0L), ("proj.weight", 1L) })
                    tables.Add(new FrozenRows($"{name}.{local}", owned[local], mask.clone(), mask.nonzero().view(-1), dim, Expert: false));
                owned["proj.bias"].requires_grad_(false);                                           // the old output's bias
            }
        return new ParameterFreeze(optimizer, tables, scopes);
    }

    /// <summary>The expert tables with frozen rows and their masks [N] (true: frozen), for updates in the backward.</summary>
    internal IEnumerable<(Parameter Table, Tensor Mask)> FrozenTables => _tables.Where(t => t.Expert).Select(t => (t.Table, t.Mask));

    /// <summary>
    /// Before clipping and the optimizer step: drops the frozen rows from row-sparse gradients; zeroes them in
    /// dense ones and remembers those tables' frozen rows and optimizer state, for <see cref="AfterStep"/>.
    /// </summary>
    public void BeforeStep()
    {
        using var noGrad = no_grad();
        Dictionary<string, Tensor>? state = null;
        foreach (var t in _tables)
        {
            var grad = t.Table.grad;
            if (grad is null) continue;
            if (grad.is_sparse)
            {
                var merged = SparseRows.Coalesce(grad);
                var rows = merged.SparseIndices[0];                                                // [U]
                var kept = t.Mask.index_select(0, rows).logical_not().nonzero().view(-1);            // [U'] positions of trainable rows
                t.Table.grad = sparse_coo_tensor(rows.index_select(0, kept).unsqueeze(0), merged.SparseValues.index_select(0, kept), t.Table.shape);
                continue;
            }
            grad.index_fill_(t.Dim, t.Ids, 0);
            Remember(t.Table, t.Ids, t.Dim);
            state ??= _optimizer.StateDict();
            foreach (var (name, tensor) in state)
                if (name.EndsWith("." + t.Name, StringComparison.Ordinal) && tensor.dim() > t.Dim && tensor.shape[t.Dim] == t.Table.shape[t.Dim])
                    Remember(tensor, t.Ids, t.Dim);
        }
    }

    /// <summary>After the optimizer step: puts back what a dense update moved.</summary>
    public void AfterStep()
    {
        using var noGrad = no_grad();
        foreach (var (destination, ids, dim, saved) in _saved)
        {
            destination.index_copy_(dim, ids, saved);
            saved.Dispose();
        }
        _saved.Clear();
    }

    void Remember(Tensor tensor, Tensor ids, long dim) => _saved.Add((tensor, ids, dim, tensor.index_select(dim, ids)));

    /// <inheritdoc />
    public void Dispose()
    {
        AfterStep();
        foreach (var scope in _frozenStatistics) scope.Dispose();
        foreach (var t in _tables)
        {
            t.Mask.Dispose();
            t.Ids.Dispose();
        }
    }
}
