using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class SparseAdamWTests
{
    const int Rows = 20, Width = 12;
    static readonly long[] AlwaysTouched = [0, 3, 4, 9];
    static readonly long[] NeverTouched = [15, 16, 17, 18, 19];

    /// A row-sparse gradient touching the always-touched rows and a few random others below 15, unordered and
    /// with one row repeated (as autograd's sum of two sparse gradients would be).
    static Tensor SparseGradient(Generator g)
    {
        var extra = randint(5, 15, [3], dtype: ScalarType.Int64, generator: g);
        var ids = cat([tensor(AlwaysTouched), extra, tensor(new long[] { 3 })]).flip(0);
        return sparse_coo_tensor(ids.unsqueeze(0), randn(ids.shape[0], Width, generator: g), [Rows, Width]);
    }

    static (Parameter Sparse, Parameter Dense) TwinTables()
    {
        var initial = randn(Rows, Width, generator: new Generator(1));
        return (new Parameter(initial.clone()), new Parameter(initial.clone()));
    }

    [Fact]
    public void RowsTouchedEveryStepFollowDenseAdamWAndOthersStayUntouched()
    {
        using var scope = NewDisposeScope();
        var (sparseTable, denseTable) = TwinTables();
        var initial = sparseTable.detach().clone();
        using var sparse = new SparseAdamW([("table", sparseTable, 0.1)]);
        using var dense = new AdamW([("table", denseTable, 0.1)]);
        var g = new Generator(7);
        for (int step = 0; step < 6; step++)
        {
            var grad = SparseGradient(g);
            sparseTable.grad = grad;
            denseTable.grad = grad.to_dense();
            sparse.Step(1e-2);
            dense.Step(1e-2);
        }
        var always = tensor(AlwaysTouched);
        var expected = denseTable.index_select(0, always);
        var actual = sparseTable.index_select(0, always);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6), "always-touched rows differ from dense AdamW");
        var never = tensor(NeverTouched);
        Assert.True(sparseTable.index_select(0, never).eq(initial.index_select(0, never)).all().item<bool>(),
                    "rows never touched changed");
        Assert.Equal(6, sparse.StepCount);
    }

    [Fact]
    public void DenseGradientUpdatesEveryRowLikeAdamW()
    {
        using var scope = NewDisposeScope();
        var (sparseTable, denseTable) = TwinTables();
        using var sparse = new SparseAdamW([("table", sparseTable, 0.05)], beta1: 0.8, beta2: 0.99);
        using var dense = new AdamW([("table", denseTable, 0.05)], beta1: 0.8, beta2: 0.99);
        var g = new Generator(3);
        for (int step = 0; step < 4; step++)
        {
            var grad = randn(Rows, Width, generator: g);
            sparseTable.grad = grad;
            denseTable.grad = grad.clone();
            sparse.Step(3e-3);
            dense.Step(3e-3);
        }
        Assert.True(sparseTable.allclose(denseTable, rtol: 1e-5, atol: 1e-6));
    }

    public static TheoryData<TableOptimizerState> TableStates => [.. Enum.GetValues<TableOptimizerState>()];

    [Theory]
    [MemberData(nameof(TableStates))]
    public void StateDictRestoresTheRunBitExactly(TableOptimizerState state)
    {
        using var scope = NewDisposeScope();
        var (table, _) = TwinTables();
        using var first = new SparseAdamW([("table", table, 0.1)], state: state);
        var g = new Generator(11);
        var grads = Enumerable.Range(0, 5).Select(_ => SparseGradient(g)).ToArray();
        for (int step = 0; step < 3; step++) { table.grad = grads[step]; first.Step(1e-2); }

        // "Checkpoint": copies of the weights and of the optimizer state, loaded into a fresh optimizer.
        var resumedTable = new Parameter(table.detach().clone());
        var saved = first.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var resumed = new SparseAdamW([("table", resumedTable, 0.1)], state: state);
        resumed.LoadStateDict(saved);
        Assert.Equal(3, resumed.StepCount);

        for (int step = 3; step < 5; step++)
        {
            table.grad = grads[step];
            first.Step(1e-2);
            resumedTable.grad = grads[step];
            resumed.Step(1e-2);
        }
        Assert.True(table.eq(resumedTable).all().item<bool>());
    }

    [Fact]
    public void StateHasTheNamesOfDenseAdamW()
    {
        using var scope = NewDisposeScope();
        var (sparseTable, denseTable) = TwinTables();
        using var sparse = new SparseAdamW([("peer.down.weight", sparseTable, 0)]);
        using var dense = new AdamW([("peer.down.weight", denseTable, 0)]);
        Assert.Equal(dense.StateDict().Keys.Order(), sparse.StateDict().Keys.Order());
    }

    [Fact]
    public void PeerLayerTrainsTheSameWithEitherKernelWhenEveryExpertIsTouched()
    {
        using var scope = NewDisposeScope();
        // N = 4 experts, 2 heads × 2 selected, 64 tokens: every row has a gradient every step, so lazy and
        // dense AdamW must agree.
        var options = new PeerOptions { SubKeyCount = 2, HeadCount = 2, TopK = 2, KeyDim = 4 };
        var plain = new Peer(16, options with { Kernel = KernelChoice.Plain });
        var fused = new Peer(16, options with { Kernel = KernelChoice.Fused });
        fused.load_state_dict(plain.state_dict());
        IOptimizer OptimizerFor(Peer layer, bool sparseTables)
        {
            var named = layer.named_parameters().Select(p => (p.name, p.parameter, 0.1)).ToList();
            bool IsTable(string name) => name is "down.weight" or "up.weight";
            IOptimizer tables = sparseTables
                ? new SparseAdamW(named.Where(p => IsTable(p.name)))
                : new AdamW(named.Where(p => IsTable(p.name)));
            return new CompositeOptimizer((new AdamW(named.Where(p => !IsTable(p.name))), null), (tables, 2e-2));
        }
        using var plainOptimizer = OptimizerFor(plain, sparseTables: false);
        using var fusedOptimizer = OptimizerFor(fused, sparseTables: true);
        var g = new Generator(5);
        for (int step = 0; step < 4; step++)
        {
            var x = randn(64, 16, generator: g);
            var target = randn(64, 16, generator: g);
            foreach (var (layer, optimizer) in new[] { (plain, plainOptimizer), (fused, fusedOptimizer) })
            {
                optimizer.ZeroGrad();
                (layer.forward(x) - target).square().mean().backward();
                optimizer.Step(1e-2);
            }
        }
        Assert.True(fused.Down.allclose(plain.Down, rtol: 1e-4, atol: 1e-5));
        Assert.True(fused.Up.allclose(plain.Up, rtol: 1e-4, atol: 1e-5));
        Assert.True(fused.Retrieval.SubKeys.allclose(plain.Retrieval.SubKeys, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void RejectsTablesItCannotUpdate()
    {
        using var scope = NewDisposeScope();
        var keys = new Parameter(randn(2, 4, 3));
        Assert.Throws<ArgumentException>(() => new SparseAdamW([("keys", keys, 0)]));
    }
}
