using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Distributed;

/// <summary>
/// Data parallelism's one exchange per step (DESIGN.md "Distributed training"): after every rank's backward on its
/// shard of the batch, each gradient becomes the mean of the ranks' gradients, identical on every rank.
/// <list type="bullet">
/// <item>Dense gradients are summed with all-reduce in buckets of about <see cref="BucketBytes"/> (small
/// gradients packed together; one larger than a bucket in place), then divided by P.</item>
/// <item>Row-sparse gradients (PEER's expert tables) travel as their touched rows: every rank all-gathers the
/// (ids, rows) of all ranks and merges them in rank order with the same deterministic coalescing, so the
/// traffic grows with the rows touched, not with N, and every rank holds the same bits.</item>
/// </list>
/// A parameter with a gradient on some ranks only (a layer a shard did not reach) counts as zero elsewhere.
/// </summary>
public sealed unsafe class GradientExchange
{
    /// <summary>Default bucket size: a few MB per all-reduce call.</summary>
    public const int DefaultBucketBytes = 4 << 20;

    readonly ICommunicator _communicator;
    readonly Parameter[] _parameters;
    readonly float[] _bucket;

    /// <summary>An exchange of the gradients of <paramref name="parameters"/> (the same list, in the same order, on every rank).</summary>
    public GradientExchange(ICommunicator communicator, IEnumerable<Parameter> parameters, int bucketBytes = DefaultBucketBytes)
    {
        if (bucketBytes < sizeof(float)) throw new ArgumentOutOfRangeException(nameof(bucketBytes), "a bucket holds at least one float");
        (_communicator, _parameters, BucketBytes) = (communicator, parameters.ToArray(), bucketBytes);
        _bucket = new float[bucketBytes / sizeof(float)];
    }

    /// <summary>Bytes per all-reduce call of packed dense gradients.</summary>
    public int BucketBytes { get; }

    /// <summary>Bytes of dense gradients this rank contributed to the last exchange (the all-reduce payload).</summary>
    public long DenseBytes { get; private set; }

    /// <summary>Bytes of (id, row) pairs this rank contributed to the last exchange (its part of the all-gather).</summary>
    public long SparseBytes { get; private set; }

    /// <summary>Bytes of (id, row) pairs every rank received in the last exchange: all ranks' touched rows.</summary>
    public long SparseBytesGathered { get; private set; }

    /// <summary>Replaces every gradient by the mean over the ranks; a no-op for one rank.</summary>
    public void Exchange()
    {
        (DenseBytes, SparseBytes, SparseBytesGathered) = (0, 0, 0);
        if (_communicator.Size == 1) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var kinds = GradientKinds();
        var scale = 1f / _communicator.Size;
        var packed = new List<(Tensor Gradient, int Offset)>();
        int used = 0;
        for (int i = 0; i < _parameters.Length; i++)
        {
            var parameter = _parameters[i];
            if (kinds[i] == Kind.Sparse)
            {
                ExchangeRows(parameter, scale);
                continue;
            }
            if (kinds[i] != Kind.Dense) continue;
            var gradient = DenseGradient(parameter);
            var count = (int)gradient.numel();
            DenseBytes += (long)count * sizeof(float);
            var values = new Span<float>(TensorMemory.Pointer<float>(gradient), count);
            if (count > _bucket.Length)
            {
                _communicator.AllReduceSum(values);
                gradient.mul_(scale);
                continue;
            }
            if (used + count > _bucket.Length) used = Flush(packed, used, scale);
            values.CopyTo(_bucket.AsSpan(used));
            packed.Add((gradient, used));
            used += count;
        }
        Flush(packed, used, scale);
    }

    /// <summary>All-reduces the packed gradients and copies the means back into them.</summary>
    int Flush(List<(Tensor Gradient, int Offset)> packed, int used, float scale)
    {
        if (used == 0) return 0;
        _communicator.AllReduceSum(_bucket.AsSpan(0, used));
        foreach (var (gradient, offset) in packed)
        {
            var count = (int)gradient.numel();
            var values = new Span<float>(TensorMemory.Pointer<float>(gradient), count);
            for (int j = 0; j < count; j++) values[j] = _bucket[offset + j] * scale;
        }
        packed.Clear();
        return 0;
    }

    /// <summary>
    /// Gathers every rank's touched rows of one table, in rank order, and merges them: ids ascending, repeated
    /// ids summed in rank order (<see cref="SparseRows.Coalesce"/>), then divided by P.
    /// </summary>
    void ExchangeRows(Parameter table, float scale)
    {
        long N = table.shape[0], d = table.shape[1];
        var local = table.grad is { } g ? SparseRows.Coalesce(g) : sparse_coo_tensor(empty(1, 0, dtype: ScalarType.Int64), empty(0, d), [N, d]);
        var ids = local.SparseIndices.contiguous();                                    // [1, U_r]
        var rows = local.SparseValues.contiguous();                                    // [U_r, d]
        var counts = _communicator.AllGather(ids.numel());                              // U_0 … U_{P−1}
        var total = counts.Sum();
        var allIds = empty(1, total, dtype: ScalarType.Int64);                          // [1, ΣU]
        var allRows = empty(total, d);                                                  // [ΣU, d]
        _communicator.AllGather(new ReadOnlySpan<long>(TensorMemory.Pointer<long>(ids), (int)ids.numel()), counts,
                                new Span<long>(TensorMemory.Pointer<long>(allIds), (int)total));
        _communicator.AllGather(new ReadOnlySpan<float>(TensorMemory.Pointer<float>(rows), checked((int)rows.numel())), counts.Select(c => c * d).ToArray(),
                                new Span<float>(TensorMemory.Pointer<float>(allRows), checked((int)(total * d))));
        SparseBytes += ids.numel() * (sizeof(long) + d * sizeof(float));
        SparseBytesGathered += total * (sizeof(long) + d * sizeof(float));
        var merged = SparseRows.Coalesce(sparse_coo_tensor(allIds, allRows, [N, d]));
        merged.SparseValues.mul_(scale);   // the values alias the merged gradient's storage
        table.grad = merged;   // libtorch holds the gradient; the scope frees only this handle
    }

    /// <summary>The parameter's dense float32 gradient, contiguous, created as zeros when this rank has none.</summary>
    static Tensor DenseGradient(Parameter parameter)
    {
        var gradient = parameter.grad;
        if (gradient is null)
        {
            parameter.grad = zeros_like(parameter);
            gradient = parameter.grad;
        }
        else if (!gradient.is_contiguous())
        {
            parameter.grad = gradient.contiguous();
            gradient = parameter.grad;
        }
        if (gradient.dtype != ScalarType.Float32) throw new InvalidOperationException($"data-parallel training exchanges float32 gradients, not {gradient.dtype}");
        return gradient;
    }

    enum Kind { None, Dense, Sparse }

    /// <summary>Per parameter, whether any rank has a dense or a sparse gradient (the ranks must agree on which).</summary>
    Kind[] GradientKinds()
    {
        var counts = new long[2 * _parameters.Length];   // [dense, sparse] per parameter
        for (int i = 0; i < _parameters.Length; i++)
            if (_parameters[i].grad is { } gradient) counts[2 * i + (gradient.is_sparse ? 1 : 0)] = 1;
        _communicator.AllReduceSum(counts);
        var kinds = new Kind[_parameters.Length];
        for (int i = 0; i < _parameters.Length; i++)
        {
            var (dense, sparse) = (counts[2 * i], counts[2 * i + 1]);
            if (dense > 0 && sparse > 0) throw new InvalidOperationException($"parameter {i} has a dense gradient on {dense} ranks and a sparse one on {sparse}");
            kinds[i] = sparse > 0 ? Kind.Sparse : dense > 0 ? Kind.Dense : Kind.None;
        }
        return kinds;
    }
}
