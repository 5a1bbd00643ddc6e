using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// <summary>
/// Expert tables stored in bfloat16 (<see cref="ExpertTableStorage"/>; docs/SPARSE_UPDATES.md, "bfloat16 tables"):
/// the kernels read them widened to float32, so every result equals the float32 kernel's on the widened values bit
/// for bit; an update computes the float32 row the float32 path would, then rounds it stochastically to one of its two
/// bfloat16 neighbours.
/// </summary>
public unsafe class BFloat16TablesTests
{
    const int ModelDim = 20;   // two 8-lane vectors and a tail of 4
    static readonly PeerOptions Float32Options = new() { SubKeyCount = 8, HeadCount = 2, TopK = 3, KeyDim = 8 };
    static readonly PeerOptions BFloat16Options = Float32Options with { TableStorage = ExpertTableStorage.BFloat16 };

    static bool Same(Tensor a, Tensor b) => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>The two bfloat16 neighbours of each float32 value: rounded toward zero, and one step away from zero (equal when exact).</summary>
    static (Tensor Low, Tensor High) Neighbours(Tensor values)
    {
        var v = values.contiguous().data<float>().ToArray();
        var low = new float[v.Length];
        var high = new float[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            uint bits = BitConverter.SingleToUInt32Bits(v[i]), truncated = bits & 0xFFFF0000u;
            low[i] = BitConverter.UInt32BitsToSingle(truncated);
            high[i] = BitConverter.UInt32BitsToSingle(truncated == bits ? truncated : truncated + 0x10000u);
        }
        return (tensor(low).view(values.shape), tensor(high).view(values.shape));
    }

    [Fact]
    public void StochasticRoundingPicksANeighbourUnbiasedAndReproducibly()
    {
        const int n = 37;   // vector body and scalar tail
        var g = new Generator(3);
        var values = randn(n, generator: g) * 0.01;
        values[5].fill_(1.5f);                                         // exact in bfloat16: never moves
        var (low, high) = Neighbours(values);
        var sum = zeros(n, dtype: ScalarType.Float64);
        var rounded = empty(n, dtype: ScalarType.BFloat16);
        const int draws = 4000;
        var first = empty(n, dtype: ScalarType.BFloat16);
        for (int seed = 0; seed < draws; seed++)
        {
            BFloat16Math.RoundStochastic(TensorMemory.Pointer<float>(values), TensorMemory.Pointer<ushort>(rounded), n, BFloat16Math.RowSeed(9, seed));
            var wide = rounded.to(ScalarType.Float32);
            Assert.True(wide.eq(low).logical_or(wide.eq(high)).all().item<bool>(), $"draw {seed}: a value was not rounded to one of its two bfloat16 neighbours");
            sum += wide.to(ScalarType.Float64);
            if (seed == 0) first.copy_(rounded);
        }
        Assert.Equal(1.5f, (sum[5] / draws).item<double>(), 12);
        // E[rounded] = value: the mean of 4000 draws is within 5 standard errors of a Bernoulli over the gap.
        var gap = (high - low).abs().to(ScalarType.Float64);
        var error = (sum / draws - values.to(ScalarType.Float64)).abs();
        Assert.True(error.le(gap * 5 * 0.5 / Math.Sqrt(draws) + 1e-12).all().item<bool>(), $"biased rounding: largest error {error.max().item<double>():E3} against gaps up to {gap.max().item<double>():E3}");
        BFloat16Math.RoundStochastic(TensorMemory.Pointer<float>(values), TensorMemory.Pointer<ushort>(rounded), n, BFloat16Math.RowSeed(9, 0));
        Assert.True(Same(first, rounded), "the same seed rounded differently");
    }

    [Fact]
    public void WideningAndRoundingToNearestAgreeWithLibtorch()
    {
        var values = randn(45, generator: new Generator(4));
        var ours = empty(45, dtype: ScalarType.BFloat16);
        var p = TensorMemory.Pointer<ushort>(ours);
        var v = TensorMemory.Pointer<float>(values);
        for (int i = 0; i < 45; i++) p[i] = BFloat16Math.RoundNearest(v[i]);
        Assert.True(Same(values.to(ScalarType.BFloat16), ours), "round to nearest even differs from libtorch's conversion");
        var widened = empty(45);
        BFloat16Math.Widen(p, TensorMemory.Pointer<float>(widened), 45);
        Assert.True(Same(ours.to(ScalarType.Float32), widened), "widening differs from libtorch's conversion");
    }

    [Theory]
    [InlineData(16, 20, 9, ExpertActivation.Gelu)]
    [InlineData(11, 37, 200, ExpertActivation.Relu)]
    public void FusedKernelOnBFloat16TablesEqualsTheFloat32KernelOnTheWidenedValues(int tokens, int dim, int experts, ExpertActivation activation)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(17);
        var x = randn(tokens, dim, generator: g);
        var ids = randint(experts, [tokens, 2, 3], dtype: ScalarType.Int64, generator: g);
        var gates = rand(tokens, 2, 3, generator: g);
        var down16 = (randn(experts, dim, generator: g) * 0.3).to(ScalarType.BFloat16);
        var up16 = (randn(experts, dim, generator: g) * 0.3).to(ScalarType.BFloat16);
        var r = randn(tokens, dim, generator: g);

        Tensor[] Run(Tensor downValues, Tensor upValues)
        {
            var xs = x.clone().requires_grad_();
            var gs = gates.clone().requires_grad_();
            var down = new Parameter(downValues.clone());
            var up = new Parameter(upValues.clone());
            var y = FusedExperts.Forward(xs, ids, gs, down, up, activation);
            (y * r).sum().backward();
            return [y.detach(), xs.grad!, gs.grad!, down.grad!, up.grad!];
        }

        var wide = Run(down16.to(ScalarType.Float32), up16.to(ScalarType.Float32));
        var narrow = Run(down16, up16);
        string[] names = ["y", "dx", "dgates"];
        for (int i = 0; i < 3; i++) Assert.True(Same(wide[i], narrow[i]), $"{names[i]} differs between bfloat16 tables and their float32 widening");
        for (int i = 3; i < 5; i++)
        {
            Assert.True(narrow[i].is_sparse && narrow[i].dtype == ScalarType.BFloat16, "a bfloat16 table's gradient is not row-sparse bfloat16");
            Assert.True(Same(wide[i].to_dense().to(ScalarType.BFloat16), narrow[i].to_dense()), "a bfloat16 table's gradient is not the float32 one rounded");
        }
    }

    [Fact]
    public void ABFloat16LayerHasBFloat16TablesUnderTheSameNamesAndComputesLikeItsWidening()
    {
        manual_seed(2);
        using var narrow = new Peer(ModelDim, BFloat16Options);
        using var wide = new Peer(ModelDim, Float32Options);
        var state = narrow.state_dict();
        Assert.Equal(wide.state_dict().Keys.Order(), state.Keys.Order());
        Assert.Equal(ScalarType.BFloat16, state["down.weight"].dtype);
        Assert.Equal(ScalarType.BFloat16, state["up.weight"].dtype);
        Assert.Equal(ScalarType.Float32, state["query.weight"].dtype);
        using (no_grad())
            foreach (var (name, tensor) in wide.state_dict()) tensor.copy_(state[name]);
        narrow.eval();
        wide.eval();
        var x = randn(5, 3, ModelDim, generator: new Generator(8));
        using var _ = no_grad();
        Assert.True(Same(wide.forward(x), narrow.forward(x)), "a bfloat16 layer's output differs from its float32 widening's");
        // The draw is the float32 one, rounded: the spread of u_i is that of the float32 layer.
        Assert.InRange(narrow.Down.to(ScalarType.Float32).abs().max().item<float>(), 0.5 / Math.Sqrt(ModelDim), 1.01 / Math.Sqrt(ModelDim));
    }

    public static TheoryData<TableOptimizerState> States => [.. Enum.GetValues<TableOptimizerState>()];

    [Theory]
    [MemberData(nameof(States))]
    public void AnUpdateInTheBackwardRoundsTheFloat32UpdateToANeighbour(TableOptimizerState state)
    {
        manual_seed(21);
        using var narrow = new Peer(ModelDim, BFloat16Options);
        using var wide = new Peer(ModelDim, Float32Options);
        using (no_grad())
            foreach (var (name, tensor) in wide.state_dict()) tensor.copy_(narrow.state_dict()[name]);
        var config = new TrainConfig { TableState = state, UpdateInBackward = true, GradientClip = 0, WeightDecay = 0.1 };
        var before = narrow.Tables.ToDictionary(t => t.Name, t => t.Table.to(ScalarType.Float32));

        List<long> touched = [];
        void Step(Peer layer)
        {
            using var optimizer = OptimizerFactory.Create(layer, config);
            using var attached = TableUpdatesInBackward.Attach(layer, optimizer, 0);
            var g = new Generator(5);
            var x = randn(64, ModelDim, generator: g);
            var r = randn(64, ModelDim, generator: g);
            attached.BeginStep(0.5);   // a large rate: rows move by many bfloat16 steps
            var y = layer.forward(x);
            (y * r).sum().backward();
            attached.ClipGlobalNorm(layer.parameters());
            optimizer.Step(0.5);
        }
        using (narrow.Retrieval.Attach(c => c with { Observer = new Recorder(touched) })) Step(narrow);
        Step(wide);

        var rows = tensor(touched.Distinct().Order().ToArray());
        var untouched = tensor(Enumerable.Range(0, (int)Float32Options.ExpertCount).Select(i => (long)i).Except(touched).ToArray());
        Assert.True(untouched.numel() > 0 && rows.numel() > 0);
        foreach (var ((name, table16), (_, table32)) in narrow.Tables.Zip(wide.Tables))
        {
            var (low, high) = Neighbours(table32.index_select(0, rows));
            var actual = table16.index_select(0, rows).to(ScalarType.Float32);
            Assert.True(actual.eq(low).logical_or(actual.eq(high)).all().item<bool>(), $"'{name}': an updated row is not the float32 update rounded to a neighbour");
            var up = actual.eq(high).logical_and(high.ne(low)).sum().item<long>();
            var down = actual.eq(low).logical_and(high.ne(low)).sum().item<long>();
            Assert.True(up > 0 && down > 0, $"'{name}': {up} entries rounded away from zero and {down} toward it; stochastic rounding goes both ways");
            Assert.False(Same(table16.to(ScalarType.Float32), before[name]), $"'{name}': the update changed nothing");
            Assert.True(Same(table16.index_select(0, untouched).to(ScalarType.Float32), before[name].index_select(0, untouched)), $"'{name}': a row never selected changed");
        }
    }

    sealed class Recorder(List<long> ids) : ISelectionObserver
    {
        public void Observe(Tensor selected, Tensor gates) => ids.AddRange(selected.data<long>());
    }

    [Fact]
    public void TrainingARunResumesBitForBitAndSavesBFloat16Tables()
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 8);
        config = config with
        {
            Model = config.Model with { PeerOptions = config.Model.PeerOptions with { TableStorage = ExpertTableStorage.BFloat16 } },
            Train = config.Train with { UpdateInBackward = true },
        };
        var straight = Training.CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "straight"), stopAfter: null, resumeFrom: null);
        var firstHalf = Training.CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: 4, resumeFrom: null);
        var secondHalf = Training.CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: null, resumeFrom: Path.Combine(folder.Path, "split"));
        Assert.Equal(8, straight.Count);
        Assert.True(straight.All(double.IsFinite) && straight[^1] < straight[0], $"losses {string.Join(", ", straight)}");
        Assert.Equal(straight, firstHalf.Concat(secondHalf).ToList());

        var (model, optimizer, info) = TrainingSetup.Resume(Path.Combine(folder.Path, "straight"));
        using var _ = model;
        using var __ = optimizer;
        Assert.Equal(ExpertTableStorage.BFloat16, info.Config.Model.PeerOptions.TableStorage);
        var tables = model.state_dict().Where(p => p.Key.EndsWith("ffn.down.weight") || p.Key.EndsWith("ffn.up.weight")).ToList();
        Assert.NotEmpty(tables);
        Assert.All(tables, t => Assert.Equal(ScalarType.BFloat16, t.Value.dtype));
        Assert.All(optimizer.StateDict().Where(s => s.Key.Contains("ffn.")), s => Assert.NotEqual(ScalarType.BFloat16, s.Value.dtype));
    }

    [Fact]
    public void BFloat16TablesWithoutTheUpdateInTheBackwardOrTheFusedKernelAreRefusedByName()
    {
        var config = TinyRuns.Config(steps: 1);
        var bf16 = config with { Model = config.Model with { PeerOptions = config.Model.PeerOptions with { TableStorage = ExpertTableStorage.BFloat16 } } };
        var error = Assert.Throws<PeerSharpException>(bf16.Validate);
        Assert.StartsWith("PEER tables stored in bfloat16 (tableStorage: bfloat16) are trained only with the update in the backward", error.Message);

        var plain = bf16.Model.PeerOptions with { Kernel = KernelChoice.Plain };
        error = Assert.Throws<PeerSharpException>(plain.Validate);
        Assert.StartsWith("PEER tables stored in bfloat16 need the fused kernels", error.Message);

        using var layer = new Peer(ModelDim, BFloat16Options);
        error = Assert.Throws<PeerSharpException>(() => OptimizerFactory.Create(layer, new TrainConfig()));
        Assert.StartsWith("expert table 'down.weight' is stored in bfloat16, which trains only with the update in the backward", error.Message);
    }
}
