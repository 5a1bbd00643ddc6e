using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

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
/// (Kernels/Optimizer/RowWiseAdamWKernel.cs).
/// Gradients are the row-sparse tensors of the fused kernel (repeated rows are merged first); a dense
/// gradient counts as touching every row. The row update itself is Kernels/Optimizer/SparseAdamWKernel.cs.
/// </summary>
public sealed class SparseAdamW : IOptimizer
{
    readonly AdamState _state;
    readonly double _beta1, _beta2, _epsilon;
    readonly int? _threads;

    /// <summary>An optimizer over named 2-D tables [N, d], each with its own decoupled weight decay, keeping <paramref name="state"/> per table.</summary>
    public SparseAdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
                       double beta1 = 0.9, double beta2 = 0.95, double epsilon = 1e-8, int? threads = null,
                       TableOptimizerState state = TableOptimizerState.Full)
    {
        (_beta1, _beta2, _epsilon, _threads) = (beta1, beta2, epsilon, threads);
        var tables = parameters.ToList();
        foreach (var (name, parameter, _) in tables)
            if (parameter.dim() != 2 || parameter.dtype != ScalarType.Float32 || parameter.device_type != TorchSharp.DeviceType.CPU)
                throw new ArgumentException($"SparseAdamW updates float32 CPU tables [N, d]; '{name}' is not one");
        if (!Enum.IsDefined(state)) throw new ArgumentException($"table optimizer state {(int)state} is not known");
        _state = new AdamState(tables, state);
    }

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
        var t = _state.Advance();
        // Without a first moment the step is g itself: β1 = 0, and 1 − β1^t = 1.
        var beta1 = _state.Kind == TableOptimizerState.RowWiseNoMomentum ? 0 : _beta1;
        var rule = new SparseAdamWKernel.Rule(
            Beta1: (float)beta1, Beta2: (float)_beta2, Epsilon: (float)_epsilon,
            InverseCorrection2: (float)(1 / (1 - Math.Pow(_beta2, t))),
            StepSize: (float)(learningRate / (1 - Math.Pow(beta1, t))),
            Decay: 0);
        foreach (var e in _state.Entries)
        {
            var grad = e.Parameter.grad;
            if (grad is null) continue;
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

    /// <inheritdoc />
    public void ZeroGrad() => _state.ZeroGrad();

    /// <inheritdoc />
    public Dictionary<string, Tensor> StateDict() => _state.StateDict();

    /// <inheritdoc />
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state) => _state.LoadStateDict(state);

    /// <inheritdoc />
    public void Dispose() => _state.Dispose();
}
