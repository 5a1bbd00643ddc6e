using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// PEER step 5 as one autograd function whose forward and backward are the C# kernels of
/// <see cref="FusedExpertsKernel"/>: same contract as <see cref="PlainExperts.Forward"/>, but it never builds
/// the [M, h, k, d_model] gathers and the gradients of the expert tables are sparse COO tensors holding only
/// the touched rows (unique ids, ascending), like nn.Embedding(sparse=True). CPU only; float32 inputs, and tables
/// in float32 or bfloat16 (<see cref="ExpertTableStorage"/>, both the same). A bfloat16 leaf table's gradient rows
/// are stored in bfloat16, as autograd would; trained, such tables are updated in the backward instead.
/// <para>
/// Where a table is a leaf (a parameter, as in the PEER layer), the backward adds its sparse
/// gradient to the table's .grad itself, exactly as libtorch's AccumulateGrad would (set when empty, summed
/// otherwise), instead of returning it through the graph: TorchSharp keeps a reference to every tensor a
/// custom backward returns, and AccumulateGrad copies any gradient it cannot take over, which would be
/// hundreds of MB per step at N = 1024². Only torch.autograd.grad-style calls that ask for the tables'
/// gradients as results do not see them that way. A table that is not a leaf gets its gradient through the
/// graph. Sums of several gradients may repeat ids; <see cref="SparseRows.Coalesce"/> merges them.
/// </para>
/// <para>
/// With an <see cref="ITableUpdate"/> (the internal overload), the rows of a leaf table are applied to it by its
/// optimizer inside the backward instead, and no gradient is stored (docs/SPARSE_UPDATES.md, "Update in the backward").
/// </para>
/// </summary>
public static class FusedExperts
{
    /// <param name="x">[M, d_model] token inputs.</param>
    /// <param name="ids">[M, h, k] selected expert ids (int64, in [0, N)).</param>
    /// <param name="gates">[M, h, k] softmax gates.</param>
    /// <param name="down">[N, d_model] u_i rows.</param>
    /// <param name="up">[N, d_model] v_i rows.</param>
    /// <param name="activation">σ.</param>
    /// <param name="threads">Threads of the kernels; null: <see cref="KernelThreads.Default"/>.</param>
    /// <returns>[M, d_model].</returns>
    public static Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation, int? threads = null) =>
        Forward(x, ids, gates, down, up, activation, threads, null);

    /// <summary>
    /// As the public overload; with <paramref name="tableUpdate"/>, the backward hands the coalesced gradient rows
    /// of each leaf table to it, which applies the optimizer's update row by row instead of storing a gradient
    /// (docs/SPARSE_UPDATES.md, "Update in the backward"). The tables then change during the backward: v rows as
    /// soon as their gradient is reduced, u rows after dx was computed from the old ones.
    /// </summary>
    internal static Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation, int? threads,
                                   ITableUpdate? tableUpdate)
    {
        using var scope = NewDisposeScope();
        long N = down.shape[0], d = down.shape[1];
        if (x.dim() != 2 || x.shape[1] != d || !up.shape.SequenceEqual(down.shape) || !gates.shape.SequenceEqual(ids.shape) || ids.shape[0] != x.shape[0])
            throw new ArgumentException($"fused experts: shapes x [{string.Join(", ", x.shape)}], ids [{string.Join(", ", ids.shape)}], gates [{string.Join(", ", gates.shape)}], tables [{string.Join(", ", down.shape)}] / [{string.Join(", ", up.shape)}] do not fit");
        if (x.dtype != ScalarType.Float32 || gates.dtype != ScalarType.Float32 || ids.dtype != ScalarType.Int64)
            throw new ArgumentException("fused experts take float32 inputs and gates and int64 ids");
        if (down.dtype != up.dtype || down.dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"fused experts take float32 or bfloat16 tables, both the same; these are {down.dtype} and {up.dtype}");
        if (ids.numel() > 0 && (ids.min().item<long>() < 0 || ids.max().item<long>() >= N))
            throw new ArgumentException($"fused experts: an expert id is outside [0, {N})");
        var y = ExpertFunction.apply(x.contiguous(), ids.contiguous(), gates.contiguous(), down.contiguous(), up.contiguous(),
                                     activation, threads ?? KernelThreads.Default, tableUpdate!);
        return scope.MoveToOuter(y);
    }

    /// <summary>
    /// The autograd node. A singleton (TorchSharp keeps one instance), so it holds no state: everything a
    /// backward needs travels in the context. Its backward runs inside libtorch's engine, where an exception
    /// would end the process; it only computes on tensors the forward already checked.
    /// </summary>
    sealed unsafe class ExpertFunction : autograd.SingleTensorFunction<ExpertFunction>
    {
        public override string Name => "FusedPeerExperts";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, ids, gates, down, up) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (Tensor)vars[4]);
            var (activation, threads, tableUpdate) = ((ExpertActivation)vars[5], (int)vars[6], vars[7] as ITableUpdate);
            long M = x.shape[0], S = M == 0 ? 0 : ids.numel() / M;
            var y = empty(M, x.shape[1]);                                         // [M, d_model]
            var preActivations = empty(M, S);                                     // [M, h·k]: a = u_id · x
            FusedExpertsKernel.Forward(BatchOf(x, ids, gates, down, up), TensorMemory.Pointer<float>(preActivations),
                                       TensorMemory.Pointer<float>(y), activation, threads);
            ctx.save_for_backward([x, ids, gates, down, up, preActivations]);
            ctx.save_data("activation", activation);
            ctx.save_data("threads", threads);
            ctx.save_data("needs", new[] { x.requires_grad, gates.requires_grad, down.requires_grad, up.requires_grad });
            ctx.save_data("leaves", new[] { down.is_leaf, up.is_leaf });
            ctx.save_data("update", tableUpdate!);
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput) =>
            BackwardGuard.Run("fused PEER", () => Backward(ctx, gradOutput));

        static List<Tensor> Backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (x, ids, gates, down, up, preActivations) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
            var activation = (ExpertActivation)ctx.get_data("activation");
            var threads = (int)ctx.get_data("threads");
            var needs = (bool[])ctx.get_data("needs");
            var leaves = (bool[])ctx.get_data("leaves");
            var tableUpdate = ctx.get_data("update") as ITableUpdate;
            var dy = gradOutput.contiguous();                                     // [M, d_model]
            long M = x.shape[0], S = preActivations.shape[1], N = down.shape[0], d = down.shape[1];

            var batch = BatchOf(x, ids, gates, down, up);
            using var groups = RowGroups.Build(TensorMemory.Pointer<long>(ids), (int)(M * S), N);
            // Tables updated in the backward get no gradient rows: their rows go straight to the optimizer.
            var downUpdate = needs[2] && leaves[0] ? tableUpdate?.Begin(down, groups.RowCount) : null;
            var upUpdate = needs[3] && leaves[1] ? tableUpdate?.Begin(up, groups.RowCount) : null;
            var dx = needs[0] ? empty_like(x) : null;                             // [M, d_model]
            var dGates = needs[1] ? empty_like(gates) : null;                     // [M, h, k]
            var coefficientU = needs[0] || downUpdate is not null ? empty(M, S) : null;   // [M, h·k]: g · t · σ'(a)
            var dDownRows = needs[2] && downUpdate is null ? empty(groups.RowCount, d) : null;   // [U, d_model]
            var dUpRows = needs[3] && upUpdate is null ? empty(groups.RowCount, d) : null;       // [U, d_model]
            FusedExpertsKernel.BackwardRows(batch, groups, TensorMemory.Pointer<float>(preActivations), TensorMemory.Pointer<float>(dy),
                                            Optional(dGates), Optional(coefficientU), Optional(dDownRows), Optional(dUpRows), upUpdate, activation, threads);
            if (upUpdate is not null) tableUpdate!.End(upUpdate);
            if (dx is not null) FusedExpertsKernel.BackwardInputs(batch, TensorMemory.Pointer<float>(coefficientU!), TensorMemory.Pointer<float>(dx), threads);
            if (downUpdate is not null)
            {
                // dU[g] = Σ c_u · x_m in the order BackwardRows would sum it, applied to u_id only now that dx has read u.
                groups.Reduce((int)S, (int)d, TensorMemory.Pointer<float>(coefficientU!), TensorMemory.Pointer<float>(x), null, threads, update: downUpdate);
                tableUpdate!.End(downUpdate);
            }

            Tensor? dDown = null, dUp = null;
            if (dDownRows is not null || dUpRows is not null)
            {
                var rows = empty(1, groups.RowCount, dtype: ScalarType.Int64);    // [1, U]: touched ids, ascending
                groups.Rows.CopyTo(new Span<long>(TensorMemory.Pointer<long>(rows), groups.RowCount));
                // A gradient has its parameter's dtype (libtorch refuses any other as .grad): bfloat16 rows for bfloat16 tables.
                if (dDownRows is not null) dDown = sparse_coo_tensor(rows, dDownRows.to(down.dtype), [N, d]);
                if (dUpRows is not null) dUp = sparse_coo_tensor(rows, dUpRows.to(up.dtype), [N, d]);
                if (dDown is not null && leaves[0]) { AccumulateGradient(down, dDown); dDown = null; }
                if (dUp is not null && leaves[1]) { AccumulateGradient(up, dUp); dUp = null; }
            }
            var grads = new List<Tensor> { dx!, null!, dGates!, dDown!, dUp!, null!, null!, null! };
            scope.MoveToOuter(grads.Where(g => g is not null));
            return grads;
        }

        static float* Optional(Tensor? tensor) => tensor is null ? null : TensorMemory.Pointer<float>(tensor);

    }

    /// <summary>
    /// What AccumulateGrad does for a leaf table: .grad = gradient, or .grad + gradient (shared with the sharded step 5,
    /// whose backward adds its row gradients the same way).
    /// </summary>
    internal static void AccumulateGradient(Tensor table, Tensor gradient)
    {
        using var existing = table.grad;
        table.grad = existing is null ? gradient : existing + gradient;
    }

    /// <summary>The kernels' view of x [M, d], ids and gates [M, S] (or [M, h, k]) and the tables.</summary>
    internal static unsafe FusedExpertsKernel.Batch BatchOf(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up)
    {
        var storage = StorageOf(down);
        return new(TensorMemory.Pointer<float>(x), TensorMemory.Pointer<long>(ids), TensorMemory.Pointer<float>(gates),
                   TableData(down, storage), TableData(up, storage), storage,
                   (int)x.shape[0], x.shape[0] == 0 ? 0 : (int)(ids.numel() / x.shape[0]), (int)x.shape[1]);
    }

    /// <summary>How a float32 or bfloat16 table is stored.</summary>
    internal static ExpertTableStorage StorageOf(Tensor table) =>
        table.dtype == ScalarType.BFloat16 ? ExpertTableStorage.BFloat16 : ExpertTableStorage.Float32;

    static unsafe void* TableData(Tensor table, ExpertTableStorage storage) =>
        storage == ExpertTableStorage.BFloat16 ? TensorMemory.Pointer<ushort>(table) : TensorMemory.Pointer<float>(table);
}
