using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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
/// <see cref="AdamW"/>, so checkpoints move between the plain and the fused kernel.
/// Gradients are the row-sparse tensors of the fused kernel (repeated rows are merged first); a dense
/// gradient counts as touching every row.
/// </summary>
public sealed class SparseAdamW : IOptimizer
{
    const int RowBlock = 64;   // rows per work item

    readonly AdamState _state;
    readonly double _beta1, _beta2, _epsilon;
    readonly int? _threads;

    /// <summary>An optimizer over named 2-D tables [N, d], each with its own decoupled weight decay.</summary>
    public SparseAdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
                       double beta1 = 0.9, double beta2 = 0.95, double epsilon = 1e-8, int? threads = null)
    {
        (_beta1, _beta2, _epsilon, _threads) = (beta1, beta2, epsilon, threads);
        var tables = parameters.ToList();
        foreach (var (name, parameter, _) in tables)
            if (parameter.dim() != 2 || parameter.dtype != ScalarType.Float32 || parameter.device_type != TorchSharp.DeviceType.CPU)
                throw new ArgumentException($"SparseAdamW updates float32 CPU tables [N, d]; '{name}' is not one");
        _state = new AdamState(tables);
    }

    /// <inheritdoc />
    public long StepCount => _state.StepCount;

    /// <summary>Names of the parameters it updates.</summary>
    public IEnumerable<string> ParameterNames => _state.Entries.Select(e => e.Name);

    /// <inheritdoc />
    public unsafe void Step(double learningRate)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var t = _state.Advance();
        var rule = new Rule(
            Beta1: (float)_beta1, Beta2: (float)_beta2, Epsilon: (float)_epsilon,
            InverseCorrection2: (float)(1 / (1 - Math.Pow(_beta2, t))),
            StepSize: (float)(learningRate / (1 - Math.Pow(_beta1, t))),
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
            int count = (int)rows.shape[0], d = (int)rows.shape[1];
            var r = rule with { Decay = (float)(1 - learningRate * e.WeightDecay) };
            long* pIds = ids is null ? null : TensorMemory.Pointer<long>(ids);
            float* pRows = TensorMemory.Pointer<float>(rows), p = TensorMemory.Pointer<float>(e.Parameter);
            float* m = TensorMemory.Pointer<float>(e.ExpAvg), v = TensorMemory.Pointer<float>(e.ExpAvgSq);
            KernelThreads.For(count, RowBlock, _threads ?? KernelThreads.Default, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
            {
                for (int i = start; i < end; i++)
                {
                    long row = pIds is null ? i : pIds[i];
                    UpdateRow(r, p + row * d, m + row * d, v + row * d, pRows + (long)i * d, d);
                }
            });
        }
    }

    /// <summary>The constants of one step: β's, ε, 1/(1 − β2^t), lr/(1 − β1^t) and the decay factor 1 − lr·λ.</summary>
    readonly record struct Rule(float Beta1, float Beta2, float Epsilon, float InverseCorrection2, float StepSize, float Decay);

    /// <summary>
    /// One row of AdamW, in the order of <see cref="AdamW.Step"/>: p ← p·(1 − lr·λ); m ← β1·m + (1 − β1)·g;
    /// v ← β2·v + (1 − β2)·g²; p ← p − lr/(1 − β1^t) · m / (√(v/(1 − β2^t)) + ε).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void UpdateRow(in Rule r, float* p, float* m, float* v, float* g, int d)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var beta1 = Vector256.Create(r.Beta1);
            var beta2 = Vector256.Create(r.Beta2);
            var oneMinusBeta1 = Vector256.Create(1 - r.Beta1);
            var oneMinusBeta2 = Vector256.Create(1 - r.Beta2);
            var epsilon = Vector256.Create(r.Epsilon);
            var inverseCorrection2 = Vector256.Create(r.InverseCorrection2);
            var stepSize = Vector256.Create(r.StepSize);
            var decay = Vector256.Create(r.Decay);
            for (; j <= d - 8; j += 8)
            {
                var gj = Vector256.Load(g + j);
                var mj = Vector256.Load(m + j) * beta1 + oneMinusBeta1 * gj;
                var vj = Vector256.Load(v + j) * beta2 + oneMinusBeta2 * (gj * gj);
                var denominator = Vector256.Sqrt(vj * inverseCorrection2) + epsilon;
                var pj = Vector256.Load(p + j) * decay - stepSize * (mj / denominator);
                mj.Store(m + j);
                vj.Store(v + j);
                pj.Store(p + j);
            }
        }
        for (; j < d; j++)
        {
            float gj = g[j];
            float mj = m[j] * r.Beta1 + (1 - r.Beta1) * gj;
            float vj = v[j] * r.Beta2 + (1 - r.Beta2) * (gj * gj);
            float denominator = MathF.Sqrt(vj * r.InverseCorrection2) + r.Epsilon;
            (m[j], v[j]) = (mj, vj);
            p[j] = p[j] * r.Decay - r.StepSize * (mj / denominator);
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
