using PeerSharp.Config;
using PeerSharp.Distributed;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.ExpertParallel;

/// <summary>
/// Expert parallelism's state (<see cref="TrainConfig.ExpertParallel"/>, DESIGN.md "Distributed training"): the rows
/// of every PEER layer's tables, and their optimizer state, sharded over the ranks by id mod P
/// (<see cref="ExpertOwners"/>), while everything else stays data parallel. Each sharded tensor keeps its identity
/// (the optimizer and the layer still hold it) but its storage is replaced by this rank's rows, [N_r, …].
/// <para>
/// The tables' gradients are complete on their owner after the backward (<see cref="ExpertExchange"/>), so they skip
/// the gradient exchange and are only divided by P like the exchanged means. For a checkpoint, the shards are
/// gathered to rank 0 in id order (<see cref="WithWholeTables{T}"/>), so rank 0 writes the format of a single
/// process and any run resumes it; that needs the whole tables on rank 0's machine for the time of the save.
/// </para>
/// </summary>
public sealed class ExpertParallelism : IDisposable
{
    readonly List<(IDisposable Scope, ExpertOwners Shards)> _layers;   // each layer's scope with the sharded step 5
    readonly List<(Tensor Tensor, ExpertOwners Shards)> _tensors;   // tables and optimizer state, in the same order on every rank
    readonly ICommunicator _ranks;

    ExpertParallelism(ICommunicator ranks, List<(IDisposable, ExpertOwners)> layers, List<(Tensor, ExpertOwners)> tensors, List<Parameter> tables)
    {
        (_ranks, _layers, _tensors, Parameters) = (ranks, layers, tensors, tables);
    }

    /// <summary>The sharded tables (every PEER layer's down.weight and up.weight).</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>Bytes this rank sent to other ranks in the layers' exchanges since the last <see cref="ResetTraffic"/>.</summary>
    public long BytesSent => _layers.Sum(l => l.Shards.BytesSent);

    /// <summary>Starts counting <see cref="BytesSent"/> from zero.</summary>
    public void ResetTraffic() => _layers.ForEach(l => l.Shards.ResetTraffic());

    /// <summary>Whether <paramref name="tensor"/> is one of the sharded tensors (they differ between the ranks by design).</summary>
    public bool Holds(Tensor tensor) => Address(tensor) is var address && address != 0 && _tensors.Any(t => Address(t.Tensor) == address);

    /// <summary>
    /// Where a tensor's elements start (0 for an empty or strided one, or one of 1-byte elements, never a table's): TorchSharp hands out a new wrapper, with a
    /// handle of its own, for the same parameter each time it enumerates a module's, so identity is its memory.
    /// </summary>
    static unsafe nint Address(Tensor tensor) =>
        tensor.numel() == 0 || !tensor.is_contiguous() || tensor.device_type != TorchSharp.DeviceType.CPU || tensor.element_size() is not (2 or 4 or 8)
            ? 0
            : (nint)Bytes(tensor);

    /// <summary>Refuses settings expert parallelism cannot run with, before anything is built: one <see cref="PeerSharpException"/> naming the setting.</summary>
    public static void Check(RunConfig config, ICommunicator ranks)
    {
        if (ranks.Size < 2)
            throw new PeerSharpException($"expert parallelism (--expert-parallel, \"expertParallel\") shards the expert tables over the ranks of an mpirun job, but this run has {ranks.Size} rank; start it with mpirun -np P (P ≥ 2) or leave the setting out");
        var kinds = config.Model.FeedForwardKinds();
        if (!kinds.Contains(FeedForwardKind.Peer))
            throw new PeerSharpException($"expert parallelism (--expert-parallel) shards PEER tables, but the model's feed-forwards are {string.Join(" ", kinds.Select(EnumNames.Name))}; use a model with a PEER block or leave the setting out");
        if (config.Model.PeerOptions.Kernel != Kernels.KernelChoice.Fused)
            throw new PeerSharpException($"expert parallelism (--expert-parallel) runs the fused PEER kernel, but the PEER kernel is '{EnumNames.Name(config.Model.PeerOptions.Kernel)}'; set it to 'fused'");
        if (config.Train.Freeze.Any)
            throw new PeerSharpException("expert parallelism (--expert-parallel) cannot freeze parameters or expert rows (the 'freeze' settings) yet; train without freezing or without expert parallelism");
        if (config.Model.PeerOptions.ExpertCount < ranks.Size)
            throw new PeerSharpException($"expert parallelism (--expert-parallel) over {ranks.Size} ranks needs at least as many experts, not {config.Model.PeerOptions.ExpertCount}");
    }

    /// <summary>
    /// Shards the whole tables every rank holds now (after rank 0's state was broadcast): each rank keeps its rows of
    /// every PEER table and of their optimizer state, and its layers run <see cref="ExpertExchange"/>.
    /// </summary>
    public static ExpertParallelism Apply(TransformerLM model, IOptimizer optimizer, ICommunicator ranks)
    {
        using var noGrad = no_grad();
        var named = model.named_parameters().ToList();
        var state = optimizer.StateDict();
        var (layers, tensors, tables) = (new List<(IDisposable, ExpertOwners)>(), new List<(Tensor, ExpertOwners)>(), new List<Parameter>());
        foreach (var layer in model.Blocks.Select(b => b.FeedForward).OfType<Peer>())
        {
            if (!layer.UsesFusedKernel)
                throw new PeerSharpException($"expert parallelism (--expert-parallel) runs the fused PEER kernel on float32 CPU tables, but the tables are {layer.Down.dtype} on {layer.Down.device_type}");
            var shards = new ExpertOwners(ranks, layer.ExpertCount);
            using var own = arange(ranks.Rank, layer.ExpertCount, ranks.Size);                      // ids r, r + P, …
            foreach (var table in new[] { layer.Down, layer.Up })
            {
                var names = named.Where(p => Address(p.parameter) == Address(table)).Select(p => p.name).ToList();
                if (names.Count == 0) throw new InvalidOperationException("a PEER table is not among the model's parameters");
                var moments = state.Where(s => names.Any(n => s.Key.EndsWith("." + n, StringComparison.Ordinal)) && s.Value.dim() > 0 && s.Value.shape[0] == layer.ExpertCount)
                                   .OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => s.Value);
                foreach (var tensor in moments.Prepend(table))
                {
                    using var rows = tensor.index_select(0, own);                                         // [N_r, …]
                    Replace(tensor, rows);
                    tensors.Add((tensor, shards));
                }
                tables.Add(table);
            }
            layers.Add((layer.Retrieval.Attach(c => c with { Experts = new ExpertExchangeStep(shards) }), shards));
        }
        return new ExpertParallelism(ranks, layers, tensors, tables);
    }

    /// <summary>Divides the tables' gradients by P: each owner summed every rank's tokens, the mean is what one process on the whole batch computes.</summary>
    public void AverageGradients()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var scale = 1.0 / _ranks.Size;
        foreach (var table in Parameters)
        {
            if (table.grad is not { } gradient) continue;
            if (!gradient.is_sparse)
            {
                gradient.mul_(scale);
                continue;
            }
            var merged = Kernels.SparseRows.Coalesce(gradient);
            merged.SparseValues.mul_(scale);   // the values alias the merged gradient's storage
            table.grad = merged;
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> with the whole tables and their optimizer state on rank 0 (gathered in id
    /// order; every rank takes part), then puts rank 0's shards back. The other ranks run nothing and return default.
    /// </summary>
    public T? WithWholeTables<T>(Func<T> action)
    {
        var wholes = _tensors.Select(t => (t.Tensor, Whole: Gather(t.Tensor, t.Shards))).ToList();
        if (_ranks.Rank != 0) return default;
        var shards = new List<Tensor>();
        using var noGrad = no_grad();
        try
        {
            foreach (var (tensor, whole) in wholes)
            {
                shards.Add(tensor.detach());   // shares this rank's rows
                Replace(tensor, whole!);
            }
            return action();
        }
        finally
        {
            for (int i = 0; i < shards.Count; i++) Replace(wholes[i].Tensor, shards[i]);
            foreach (var tensor in shards.Concat(wholes.Select(w => w.Whole!))) tensor.Dispose();
        }
    }

    /// <summary>
    /// Ends expert parallelism after training: rank 0 keeps the whole tables and optimizer state (gathered), so its
    /// model is the trained model; on every rank the layers no longer run with the others.
    /// </summary>
    public void GatherToRoot()
    {
        using var noGrad = no_grad();
        foreach (var (tensor, shards) in _tensors)
        {
            using var whole = Gather(tensor, shards);
            if (whole is not null) Replace(tensor, whole);
        }
        Dispose();
    }

    /// <summary>Makes <paramref name="tensor"/> (same object, same autograd identity) view the storage of <paramref name="storage"/>.</summary>
    static void Replace(Tensor tensor, Tensor storage)
    {
        var result = tensor.set_(storage);
        if (!ReferenceEquals(result, tensor)) result.Dispose();   // a second handle of the same tensor
    }

    /// <summary>
    /// Rank 0: the whole [N, …] tensor of every rank's rows, id r + P·i from rank r's row i; null elsewhere. Sent to
    /// rank 0 in rounds of at most <see cref="MpiCommunicator.MaxMessageBytes"/>, as MPI counts are C ints.
    /// </summary>
    static unsafe Tensor? Gather(Tensor shard, ExpertOwners shards)
    {
        var ranks = shards.Communicator;
        int P = ranks.Size, rank = ranks.Rank;
        long N = shards.ExpertCount, rows = shard.shape[0];
        using var contiguous = shard.contiguous();
        int rowBytes = checked((int)(contiguous.numel() / Math.Max(1, rows) * contiguous.element_size()));
        var whole = rank == 0 ? empty([N, .. shard.shape[1..]], dtype: shard.dtype) : null;
        long chunk = Math.Max(1, MpiCommunicator.MaxMessageBytes / ((long)rowBytes * P));                // rows per rank and round
        var receive = rank == 0 ? new byte[chunk * rowBytes * P] : [];
        var (sendCounts, receiveCounts) = (new int[P], new int[P]);
        byte* source = Bytes(contiguous), target = whole is null ? null : Bytes(whole);
        for (long start = 0; start < shards.RowCount(0); start += chunk)
        {
            long RowsOf(int r) => Math.Clamp(shards.RowCount(r) - start, 0, chunk);
            sendCounts[0] = (int)(RowsOf(rank) * rowBytes);
            for (int r = 0; r < P; r++) receiveCounts[r] = rank == 0 ? (int)(RowsOf(r) * rowBytes) : 0;
            ranks.AllToAll(new ReadOnlySpan<byte>(source + start * rowBytes, sendCounts[0]), sendCounts, receive.AsSpan(0, receiveCounts.Sum()), receiveCounts);
            if (target is null) continue;
            for (int r = 0, offset = 0; r < P; r++)
                for (long i = 0; i < RowsOf(r); i++, offset += rowBytes)
                    receive.AsSpan(offset, rowBytes).CopyTo(new Span<byte>(target + ((start + i) * P + r) * rowBytes, rowBytes));
        }
        return whole;
    }

    /// <summary>The first byte of a contiguous CPU tensor of 2-, 4- or 8-byte elements.</summary>
    static unsafe byte* Bytes(Tensor tensor) => tensor.element_size() switch
    {
        2 => (byte*)Kernels.TensorMemory.Pointer<ushort>(tensor),
        4 => (byte*)Kernels.TensorMemory.Pointer<float>(tensor),
        8 => (byte*)Kernels.TensorMemory.Pointer<long>(tensor),
        var size => throw new InvalidOperationException($"cannot gather tensors of {size}-byte elements"),
    };

    /// <summary>Detaches the layers from the other ranks (their tables stay as they are).</summary>
    public void Dispose()
    {
        foreach (var (scope, _) in _layers) scope.Dispose();
    }
}
