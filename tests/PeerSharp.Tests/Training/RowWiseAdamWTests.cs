using PeerSharp.Config;
using PeerSharp.Optimizers;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>
/// The row-wise table states of <see cref="SparseAdamW"/> (Kernels/Optimizer/RowWiseAdamWKernel.cs) against a
/// plain-loop reference of their formula that shares no code with the library.
/// </summary>
public class RowWiseAdamWTests
{
    const int Rows = 20, Width = 20;   // 20 = two 8-lane vectors and a scalar tail of 4
    const double Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, Decay = 0.1;
    static readonly long[] NeverTouched = [15, 16, 17, 18, 19];

    public static TheoryData<TableOptimizerState> RowWiseStates =>
        [TableOptimizerState.RowWise, TableOptimizerState.RowWiseBf16, TableOptimizerState.RowWiseNoMomentum];

    /// A row-sparse gradient over rows below 15: unordered, with row 3 twice (as autograd's sum of two would be).
    static Tensor SparseGradient(Generator g)
    {
        var ids = cat([tensor(new long[] { 0, 3, 4, 9 }), randint(5, 15, [6], dtype: ScalarType.Int64, generator: g), tensor(new long[] { 3 })]).flip(0);
        return sparse_coo_tensor(ids.unsqueeze(0), randn(ids.shape[0], Width, generator: g) * 0.1, [Rows, Width]);
    }

    /// <summary>
    /// The row-wise update in plain loops: repeated rows summed, then per touched row
    /// v ← β2·v + (1 − β2)·mean(g²), m ← β1·m + (1 − β1)·g (bfloat16-rounded, or m = g without momentum),
    /// p ← p·(1 − lr·λ) − lr/(1 − β1^t) · m / (√(v/(1 − β2^t)) + ε).
    /// </summary>
    sealed class Reference(float[,] table, TableOptimizerState state)
    {
        readonly float[,] _m = new float[table.GetLength(0), table.GetLength(1)];
        readonly float[] _v = new float[table.GetLength(0)];
        int _t;

        public float[,] Table => table;

        public void Step(Tensor gradient, double learningRate)
        {
            _t++;
            var ids = gradient.SparseIndices.data<long>().ToArray();
            var values = gradient.SparseValues.contiguous().data<float>().ToArray();
            int d = table.GetLength(1);
            var sums = new SortedDictionary<long, float[]>();
            for (int i = 0; i < ids.Length; i++)
            {
                if (!sums.TryGetValue(ids[i], out var sum)) sums[ids[i]] = sum = new float[d];
                for (int j = 0; j < d; j++) sum[j] += values[i * d + j];
            }
            bool momentum = state != TableOptimizerState.RowWiseNoMomentum;
            double beta1 = momentum ? Beta1 : 0;
            foreach (var (row, g) in sums)
            {
                float meanSquare = 0;
                for (int j = 0; j < d; j++) meanSquare += g[j] * g[j];
                _v[row] = (float)Beta2 * _v[row] + (float)(1 - Beta2) * (meanSquare / d);
                float step = (float)(learningRate / (1 - Math.Pow(beta1, _t))) / (MathF.Sqrt(_v[row] * (float)(1 / (1 - Math.Pow(Beta2, _t)))) + (float)Epsilon);
                var m = new float[d];
                for (int j = 0; j < d; j++) m[j] = momentum ? (float)beta1 * _m[row, j] + (float)(1 - beta1) * g[j] : g[j];
                if (state == TableOptimizerState.RowWiseBf16)
                {
                    using var rounded = tensor(m).to(ScalarType.BFloat16).to(ScalarType.Float32);
                    m = rounded.data<float>().ToArray();
                }
                for (int j = 0; j < d; j++)
                {
                    _m[row, j] = m[j];
                    table[row, j] = table[row, j] * (float)(1 - learningRate * Decay) - step * m[j];
                }
            }
        }
    }

    static float[,] ToArray(Tensor table)
    {
        var flat = table.detach().contiguous().data<float>().ToArray();
        var result = new float[table.shape[0], table.shape[1]];
        Buffer.BlockCopy(flat, 0, result, 0, flat.Length * sizeof(float));
        return result;
    }

    [Theory]
    [MemberData(nameof(RowWiseStates))]
    public void FollowsThePlainLoopFormulaAndLeavesUntouchedRowsAlone(TableOptimizerState state)
    {
        using var scope = NewDisposeScope();
        var table = new Parameter(randn(Rows, Width, generator: new Generator(1)));
        var initial = table.detach().clone();
        var reference = new Reference(ToArray(table), state);
        using var optimizer = new SparseAdamW([("table", table, Decay)], Beta1, Beta2, Epsilon, state: state);
        var g = new Generator(7);
        for (int step = 0; step < 6; step++)
        {
            var gradient = SparseGradient(g);
            var learningRate = 1e-2 * (step + 1);
            table.grad = gradient;
            optimizer.Step(learningRate);
            reference.Step(gradient, learningRate);
        }
        var expected = tensor(reference.Table);
        Assert.False(table.eq(initial).all().item<bool>(), "the optimizer changed nothing");
        Assert.True(table.allclose(expected, rtol: 1e-5, atol: 1e-6),
                    $"differs from the reference by up to {(table - expected).abs().max().item<float>()}");
        var never = tensor(NeverTouched);
        Assert.True(table.index_select(0, never).eq(initial.index_select(0, never)).all().item<bool>(), "rows never touched changed");
    }

    [Theory]
    [MemberData(nameof(RowWiseStates))]
    public void OneAndTwoThreadsGiveBitIdenticalTables(TableOptimizerState state)
    {
        using var scope = NewDisposeScope();
        const int rowCount = 1000;   // the touched rows span several work blocks of 64
        var initial = randn(rowCount, Width, generator: new Generator(2));
        var tables = new[] { new Parameter(initial.clone()), new Parameter(initial.clone()) };
        using var one = new SparseAdamW([("table", tables[0], Decay)], threads: 1, state: state);
        using var two = new SparseAdamW([("table", tables[1], Decay)], threads: 2, state: state);
        var g = new Generator(9);
        for (int step = 0; step < 3; step++)
        {
            var ids = randint(rowCount, [1, 600], dtype: ScalarType.Int64, generator: g);
            var gradient = sparse_coo_tensor(ids, randn(600, Width, generator: g), [rowCount, Width]);
            tables[0].grad = gradient;
            tables[1].grad = gradient;
            one.Step(1e-2);
            two.Step(1e-2);
        }
        Assert.True(tables[0].eq(tables[1]).all().item<bool>());
    }

    [Fact]
    public void RowWiseStatesKeepOneSecondMomentPerRowAndALighterFirstMoment()
    {
        using var scope = NewDisposeScope();
        var table = new Parameter(zeros(Rows, Width));
        string Describe(TableOptimizerState state)
        {
            using var optimizer = new SparseAdamW([("table", table, 0)], state: state);
            return string.Join("; ", optimizer.StateDict().OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => $"{kv.Key} {kv.Value.dtype} [{string.Join(", ", kv.Value.shape)}]"));
        }
        Assert.Equal("exp_avg.table Float32 [20, 20]; exp_avg_sq.table Float32 [20, 20]; step Int64 [1]", Describe(TableOptimizerState.Full));
        Assert.Equal("exp_avg.table Float32 [20, 20]; exp_avg_sq_row.table Float32 [20]; step Int64 [1]", Describe(TableOptimizerState.RowWise));
        Assert.Equal("exp_avg.table BFloat16 [20, 20]; exp_avg_sq_row.table Float32 [20]; step Int64 [1]", Describe(TableOptimizerState.RowWiseBf16));
        Assert.Equal("exp_avg_sq_row.table Float32 [20]; step Int64 [1]", Describe(TableOptimizerState.RowWiseNoMomentum));
    }

    [Fact]
    public void StateOfAnotherChoiceIsRefusedByName()
    {
        using var scope = NewDisposeScope();
        var table = new Parameter(zeros(Rows, Width));
        using var full = new SparseAdamW([("table", table, 0)]);
        using var rowWise = new SparseAdamW([("table", table, 0)], state: TableOptimizerState.RowWise);
        var error = Assert.Throws<PeerSharpException>(() => rowWise.LoadStateDict(full.StateDict()));
        Assert.Contains("'exp_avg_sq_row.table'", error.Message);
    }
}
