using PeerSharp.Config;
using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>
/// AdamW for PEER's expert tables that updates only the rows with a gradient this step ("lazy" Adam, as
/// torch.optim.SparseAdam and the sparse memory updates of product-key memories). Cost is proportional to
/// the touched rows, never to N. Semantics (docs/SPARSE_UPDATES.md):
/// <list type="bullet">
/// <item>A touched row's moments decay and take the gradient exactly as in dense AdamW; an untouched row's
/// moments, weights and decay are left alone (they do not decay toward zero in between).</item>
/// <item>Bias correction uses the global step count t (every <see cref="Step"/> counts), so a row touched
/// every step follows dense AdamW exactly, and a row first touched late gets a smaller first step.</item>
/// <item>Decoupled weight decay, p ← p·(1 − lr·λ), applies to touched rows only, in the same step.</item>
/// </list>
/// The state is the dense moments [N, d] of each table and the step count, under the same names as
/// <see cref="AdamW"/>, so checkpoints move between the plain and the fused kernel; or, with a row-wise
/// <see cref="TableOptimizerState"/>, one second moment per row and a float32, bfloat16 or no first moment
/// (Kernels/Optimizer/RowWiseAdamWKernel.cs). Tables stored in bfloat16 (<see cref="ExpertTableStorage"/>) keep
/// float32 state and are updated only in the backward, rounded back stochastically (docs/SPARSE_UPDATES.md,
/// "bfloat16 tables").
/// Gradients are the row-sparse tensors of the fused kernel (repeated rows are merged first); a dense
/// gradient counts as touching every row. The row update itself is Kernels/Optimizer/SparseAdamWKernel.cs.
/// <para>
/// Built with <c>updateInBackward</c>, it can also update a PEER table's rows inside the fused backward, as the
/// kernel reduces them (<see cref="TableUpdatesInBackward"/>; docs/SPARSE_UPDATES.md, "Update in the backward"):
/// the same row update at the step t and rate that <see cref="Step"/> would use, the gradient scaled by the clip
/// factor of the previous step, which its state keeps as "table_gradient_scale" (0 before the first step).
/// </para>
/// </summary>
public sealed class SparseAdamW : IOptimizer, ITableUpdate
{
    const string GradientScaleName = "table_gradient_scale";

    readonly AdamState _state;
    readonly double _beta1, _beta2, _epsilon;
    readonly int? _threads;
    readonly Tensor? _gradientScale;                     // [1] float64: the clip factor of the table gradients at the next step
    readonly Dictionary<nint, Tensor> _frozenRows = [];   // a table's data address → its mask [N] (bool, true: frozen)
    (double LearningRate, long Step, double GradientScale)? _backward;   // set between BeginBackward and EndBackward
    double _backwardSquares;

    /// <summary>
    /// An optimizer over named 2-D tables [N, d], each with its own decoupled weight decay, keeping <paramref name="state"/>
    /// per table; with <paramref name="updateInBackward"/> also the clip factor of updates in the backward.
    /// </summary>
    public SparseAdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
                       double beta1 = 0.9, double beta2 = 0.95, double epsilon = 1e-8, int? threads = null,
                       TableOptimizerState state = TableOptimizerState.Full, bool updateInBackward = false)
    {
        (_beta1, _beta2, _epsilon, _threads) = (beta1, beta2, epsilon, threads);
        var tables = parameters.ToList();
        foreach (var (name, parameter, _) in tables)
        {
            if (parameter.dim() != 2 || parameter.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || parameter.device_type != TorchSharp.DeviceType.CPU)
                throw new ArgumentException($"SparseAdamW updates float32 or bfloat16 CPU tables [N, d]; '{name}' is not one");
            if (parameter.dtype == ScalarType.BFloat16 && !updateInBackward)
                throw new PeerSharpException($"expert table '{name}' is stored in bfloat16, which trains only with the update in the backward (updateInBackward: true, --update-in-backward); its gradient is never stored");
        }
        if (!Enum.IsDefined(state)) throw new ArgumentException($"table optimizer state {(int)state} is not known");
        _state = new AdamState(tables, state);
        if (updateInBackward) _gradientScale = zeros(1, dtype: ScalarType.Float64);   // no step's norm known yet
    }

    /// <summary>Whether it can update tables in the backward (and keeps "table_gradient_scale" in its state).</summary>
    public bool UpdatesInBackward => _gradientScale is not null;

    /// <inheritdoc />
    public long StepCount => _state.StepCount;

    /// <summary>What it keeps per table.</summary>
    public TableOptimizerState State => _state.Kind;

    /// <summary>Names of the parameters it updates.</summary>
    internal IEnumerable<string> ParameterNames => _state.Entries.Select(e => e.Name);

    /// <inheritdoc />
    public unsafe void Step(double learningRate)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var rule = RuleAt(_state.Advance(), learningRate);
        foreach (var e in _state.Entries)
        {
            var grad = e.Parameter.grad;
            if (grad is null) continue;
            if (e.Parameter.dtype == ScalarType.BFloat16)
                throw new PeerSharpException($"bfloat16 expert table '{e.Name}' has a stored gradient, from a backward that did not update it (outside TableUpdatesInBackward); bfloat16 tables are updated only in the backward");
            Tensor? ids = null;
            Tensor rows;
            if (grad.is_sparse)
            {
                var merged = SparseRows.Coalesce(grad, _threads);
                ids = merged.SparseIndices.contiguous();                       // [1, U] ascending, unique
                rows = merged.SparseValues.contiguous();                       // [U, d]
            }
            else
                rows = grad.contiguous();                                      // [N, d]: every row touched
            var rowRule = rule with { Decay = (float)(1 - learningRate * e.WeightDecay) };
            long* rowIds = ids is null ? null : TensorMemory.Pointer<long>(ids);
            int count = (int)rows.shape[0], d = (int)rows.shape[1], threads = _threads ?? KernelThreads.Default;
            if (_state.Kind == TableOptimizerState.Full)
                SparseAdamWKernel.Update(rowRule, rowIds, TensorMemory.Pointer<float>(rows), count, d, TensorMemory.Pointer<float>(e.Parameter),
                    TensorMemory.Pointer<float>(e.ExpAvg!), TensorMemory.Pointer<float>(e.ExpAvgSq), threads);
            else
                RowWiseAdamWKernel.Update(rowRule, rowIds, TensorMemory.Pointer<float>(rows), count, d, TensorMemory.Pointer<float>(e.Parameter),
                    _state.Kind == TableOptimizerState.RowWise ? TensorMemory.Pointer<float>(e.ExpAvg!) : null,
                    _state.Kind == TableOptimizerState.RowWiseBf16 ? TensorMemory.Pointer<ushort>(e.ExpAvg!) : null,
                    TensorMemory.Pointer<float>(e.ExpAvgSq), threads);
        }
    }

    /// <summary>The constants of step t at a learning rate, the decay factor left to each table.</summary>
    SparseAdamWKernel.Rule RuleAt(long t, double learningRate)
    {
        // Without a first moment the step is g itself: β1 = 0, and 1 − β1^t = 1.
        var beta1 = _state.Kind == TableOptimizerState.RowWiseNoMomentum ? 0 : _beta1;
        return new SparseAdamWKernel.Rule(
            Beta1: (float)beta1, Beta2: (float)_beta2, Epsilon: (float)_epsilon,
            InverseCorrection2: (float)(1 / (1 - Math.Pow(_beta2, t))),
            StepSize: (float)(learningRate / (1 - Math.Pow(beta1, t))),
            Decay: 0);
    }

    /// <summary>
    /// Until <see cref="EndBackward"/>, tables whose layer holds this optimizer as its table update are updated in
    /// the backward, as the coming <see cref="Step"/> (step count + 1) at <paramref name="learningRate"/> would,
    /// with their gradient rows multiplied by <paramref name="gradientScale"/>.
    /// </summary>
    internal void BeginBackward(double learningRate, double gradientScale)
    {
        if (_gradientScale is null) throw new InvalidOperationException("this SparseAdamW was not built to update in the backward");
        _backward = (learningRate, StepCount + 1, gradientScale);
        _backwardSquares = 0;
    }

    /// <summary>Ends what <see cref="BeginBackward"/> began; returns Σ g² over the rows updated in the backward (before clipping).</summary>
    internal double EndBackward()
    {
        _backward = null;
        return _backwardSquares;
    }

    /// <summary>The clip factor of the last step's norm, for the table gradients of the next update in the backward (0 before the first).</summary>
    internal double GradientScale
    {
        get => _gradientScale!.item<double>();
        set => _gradientScale!.fill_(value);
    }

    /// <summary>Rows of <paramref name="table"/> (mask [N], true: frozen) that updates in the backward leave alone.</summary>
    internal void FreezeRows(Tensor table, Tensor mask) => _frozenRows[TensorMemory.Bytes(table).Start] = mask;

    /// <summary>Forgets every mask of <see cref="FreezeRows"/>.</summary>
    internal void ClearFrozenRows() => _frozenRows.Clear();

    /// <summary>Whether <paramref name="table"/> is one of its tables (the same memory).</summary>
    internal bool Updates(Tensor table) => Entry(TensorMemory.Bytes(table).Start) is not null;

    AdamState.Entry? Entry(IntPtr data) => _state.Entries.FirstOrDefault(e => TensorMemory.Bytes(e.Parameter).Start == data);

    unsafe TableRowUpdate? ITableUpdate.Begin(Tensor table, int rowCount)
    {
        if (_backward is not { } backward) return null;
        var data = TensorMemory.Bytes(table).Start;
        if (Entry(data) is not { } e) return null;
        var rule = RuleAt(backward.Step, backward.LearningRate) with { Decay = (float)(1 - backward.LearningRate * e.WeightDecay) };
        bool full = _state.Kind == TableOptimizerState.Full, bf16 = table.dtype == ScalarType.BFloat16;
        // One rounding stream per step and table, so a resumed run rounds exactly as the uninterrupted one.
        var roundingSeed = Kernels.BFloat16Math.RowSeed((ulong)backward.Step, IndexOf(e));
        return new TableRowUpdate(rule, (float)backward.GradientScale, bf16 ? null : (float*)data, bf16 ? (ushort*)data : null, roundingSeed, full,
            _state.Kind is TableOptimizerState.Full or TableOptimizerState.RowWise ? TensorMemory.Pointer<float>(e.ExpAvg!) : null,
            _state.Kind == TableOptimizerState.RowWiseBf16 ? TensorMemory.Pointer<ushort>(e.ExpAvg!) : null,
            TensorMemory.Pointer<float>(e.ExpAvgSq), _frozenRows.TryGetValue(data, out var mask) ? TensorMemory.Pointer<bool>(mask) : null,
            (int)table.shape[1], rowCount);
    }

    int IndexOf(AdamState.Entry entry)
    {
        for (int i = 0; i < _state.Entries.Count; i++)
            if (ReferenceEquals(_state.Entries[i], entry)) return i;
        return -1;
    }

    void ITableUpdate.End(TableRowUpdate update)
    {
        _backwardSquares += update.SumOfSquares();
        update.Dispose();
    }

    /// <inheritdoc />
    public void ZeroGrad() => _state.ZeroGrad();

    /// <inheritdoc />
    public Dictionary<string, Tensor> StateDict()
    {
        var state = _state.StateDict();
        if (_gradientScale is not null) state[GradientScaleName] = _gradientScale;
        return state;
    }

    /// <inheritdoc />
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        _state.LoadStateDict(state);
        if (_gradientScale is null) return;
        if (!state.TryGetValue(GradientScaleName, out var scale))
            throw new PeerSharpException($"optimizer state has no tensor '{GradientScaleName}'; the checkpoint was written without updateInBackward");
        using var noGrad = no_grad();
        _gradientScale.copy_(scale);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _state.Dispose();
        _gradientScale?.Dispose();
    }
}
