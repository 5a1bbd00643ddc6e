using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>
/// <see cref="TrainConfig.UpdateInBackward"/> (docs/SPARSE_UPDATES.md, "Update in the backward") against the
/// reference: the stored row-sparse gradient of the fused kernel, clipped as specified (stored gradients by this
/// step's global norm, table rows by the previous step's factor), then <see cref="SparseAdamW.Step"/>.
/// </summary>
public class UpdateInBackwardTests
{
    const int ModelDim = 20;   // two 8-lane vectors and a tail of 4
    const int Tokens = 16, Steps = 5;
    static readonly PeerOptions Options = new() { SubKeyCount = 8, HeadCount = 2, TopK = 3, KeyDim = 8 };

    public static TheoryData<TableOptimizerState, double, double?> Cases()
    {
        var cases = new TheoryData<TableOptimizerState, double, double?>();
        foreach (var state in Enum.GetValues<TableOptimizerState>())
            foreach (var clip in new[] { 0.0, 0.05 })
                cases.Add(state, clip, null);
        cases.Add(TableOptimizerState.Full, 0.05, 0.02);
        cases.Add(TableOptimizerState.RowWiseNoMomentum, 0.05, 0.02);
        return cases;
    }

    /// <summary>Counts how often each expert was selected, over every forward.</summary>
    sealed class HitCounter : ISelectionObserver
    {
        public long[] Hits { get; } = new long[Options.ExpertCount];

        public void Observe(Tensor ids, Tensor gates)
        {
            foreach (var id in ids.data<long>()) Hits[id]++;
        }
    }

    /// <summary>A run of a few steps of Σ y·r on one layer; returns the layer, its optimizer and the gradient norms.</summary>
    static (Peer Layer, IOptimizer Optimizer, List<double> Norms, long[] Hits) Train(TrainConfig config, bool inBackward, FreezeConfig? freeze = null)
    {
        manual_seed(11);
        var layer = new Peer(ModelDim, Options);
        var optimizer = OptimizerFactory.Create(layer, config with { UpdateInBackward = inBackward });
        var counter = new HitCounter();
        var observing = layer.Retrieval.Attach(c => c with { Observer = counter });
        using var frozen = freeze is null ? null : ParameterFreeze.Apply(layer, optimizer, freeze);
        using var attached = inBackward ? TableUpdatesInBackward.Attach(layer, optimizer, config.GradientClip, frozen, 1) : null;
        var parameters = layer.parameters().ToList();
        var tables = layer.Tables.Select(t => t.Name).ToHashSet();
        var norms = new List<double>();
        double tableScale = config.GradientClip > 0 ? 0 : 1;   // the reference's clip factor of the tables: the previous step's (0 at the first)
        var g = new Generator(5);
        for (int step = 0; step < Steps; step++)
        {
            using var scope = NewDisposeScope();
            double learningRate = 1e-2 * (step + 1) / Steps;
            var x = randn(Tokens, ModelDim, generator: g);
            var r = randn(Tokens, ModelDim, generator: g);
            attached?.BeginStep(learningRate);
            (layer.forward(x) * r).sum().backward();
            frozen?.BeforeStep();
            if (attached is not null)
            {
                Assert.True(layer.Tables.All(t => t.Table.grad is null), "a table updated in the backward kept a gradient");
                norms.Add(attached.ClipGlobalNorm(parameters));
            }
            else
            {
                var total = GradientClipping.ClipGlobalNorm(parameters, 0);   // measures and coalesces, clips nothing
                var scale = GradientClipping.Scale(total, config.GradientClip);
                using (no_grad())
                    foreach (var (name, p) in layer.named_parameters().Where(p => p.parameter.grad is not null))
                    {
                        var factor = tables.Contains(name) ? tableScale : scale;
                        if (factor != 1) (p.grad!.is_sparse ? p.grad.SparseValues : p.grad).mul_(factor);
                    }
                tableScale = scale;
                norms.Add(total);
            }
            optimizer.Step(learningRate);
            frozen?.AfterStep();
            optimizer.ZeroGrad();
        }
        observing.Dispose();
        return (layer, optimizer, norms, counter.Hits);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void UpdateInTheBackwardEqualsStoredGradientThenSparseAdamW(TableOptimizerState state, double clip, double? expertRate)
    {
        var config = new TrainConfig { TableState = state, GradientClip = clip, ExpertLearningRate = expertRate };
        var (reference, referenceOptimizer, referenceNorms, hits) = Train(config, inBackward: false);
        var (inBackward, optimizer, norms, _) = Train(config, inBackward: true);
        using var _1 = reference;
        using var _2 = referenceOptimizer;
        using var _3 = inBackward;
        using var _4 = optimizer;
        Assert.True(hits.Max() >= 8, $"no row was hit by many selections (most: {hits.Max()})");
        Assert.Contains(0L, hits);

        Assert.Equal(referenceNorms.Count, norms.Count);
        for (int i = 0; i < norms.Count; i++) Assert.Equal(referenceNorms[i], norms[i], 1e-5 * referenceNorms[i]);
        var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, actual) in inBackward.named_parameters())
        {
            // Without clipping both paths run the same arithmetic on the same rows: bit for bit.
            var same = clip == 0 ? Same(actual, expected[name]) : actual.allclose(expected[name], rtol: 1e-5, atol: 1e-7);
            Assert.True(same, $"'{name}' differs from the reference after {Steps} steps (largest difference {(actual - expected[name]).abs().max().item<float>()})");
        }
        var expectedState = referenceOptimizer.StateDict();
        foreach (var (name, tensor) in optimizer.StateDict().Where(s => s.Key != "table_gradient_scale"))
            Assert.True(tensor.to(ScalarType.Float64).allclose(expectedState[name].to(ScalarType.Float64), rtol: 1e-5, atol: 1e-7), $"optimizer tensor '{name}' differs");
        Assert.Equal(Steps, optimizer.StepCount);

        var untouched = tensor(Enumerable.Range(0, hits.Length).Where(i => hits[i] == 0).Select(i => (long)i).ToArray());
        manual_seed(11);
        using var initial = new Peer(ModelDim, Options);
        foreach (var (table, fresh) in inBackward.Tables.Zip(initial.Tables))
            Assert.True(Same(table.Table.index_select(0, untouched), fresh.Table.index_select(0, untouched)), $"a row never selected changed in '{table.Name}'");
    }

    [Fact]
    public void FrozenRowsStayUntouchedAndTheRestFollowsTheReference()
    {
        var config = new TrainConfig { GradientClip = 0 };
        var freeze = new FreezeConfig { OldSubKeyCount = 6 };   // experts (a, b) with a, b < 6 of n = 8
        var (reference, referenceOptimizer, _, hits) = Train(config, inBackward: false, freeze);
        var (inBackward, optimizer, _, _) = Train(config, inBackward: true, freeze);
        using var _1 = reference;
        using var _2 = referenceOptimizer;
        using var _3 = inBackward;
        using var _4 = optimizer;
        var frozenIds = Enumerable.Range(0, hits.Length).Where(i => i / 8 < 6 && i % 8 < 6).ToArray();
        Assert.Contains(frozenIds, i => hits[i] > 0);
        var frozenRows = tensor(frozenIds.Select(i => (long)i).ToArray());
        manual_seed(11);
        using var initial = new Peer(ModelDim, Options);
        foreach (var ((name, table), (_, fresh)) in inBackward.Tables.Zip(initial.Tables))
            Assert.True(Same(table.index_select(0, frozenRows), fresh.index_select(0, frozenRows)), $"a frozen row of '{name}' changed");
        var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, actual) in inBackward.named_parameters())
            Assert.True(Same(actual, expected[name]), $"'{name}' differs from the reference with frozen rows");
    }

    [Fact]
    public void WithoutClippingATrainingRunIsTheSameBitForBit()
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 6);
        config = config with { Train = config.Train with { GradientClip = 0 } };
        var off = CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "off"), null, null);
        var on = CheckpointTests.Losses(config with { Train = config.Train with { UpdateInBackward = true } }, corpus, Path.Combine(folder.Path, "on"), null, null);
        Assert.Equal(6, on.Count);
        Assert.Equal(off, on);
    }

    [Fact]
    public void ResumedRunContinuesBitForBitAndTheStateRoundTrips()
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 10);
        config = config with { Train = config.Train with { UpdateInBackward = true, GradientClip = 0.05 } };
        var straight = CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "straight"), stopAfter: null, resumeFrom: null);
        var firstHalf = CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: 5, resumeFrom: null);
        var secondHalf = CheckpointTests.Losses(config, corpus, Path.Combine(folder.Path, "split"), stopAfter: null, resumeFrom: Path.Combine(folder.Path, "split"));
        Assert.Equal(10, straight.Count);
        Assert.Equal(straight, firstHalf.Concat(secondHalf).ToList());

        var (model, optimizer, info) = TrainingSetup.Resume(Path.Combine(folder.Path, "straight"));
        using var _ = model;
        using var __ = optimizer;
        Assert.True(info.Config.Train.UpdateInBackward);
        var scale = optimizer.StateDict()["table_gradient_scale"].item<double>();
        Assert.True(scale > 0 && scale < 1, $"the clip factor kept for the tables is {scale}; expected a binding clip below 1");
    }

    [Fact]
    public void ResumingWithTheOtherSettingIsRefusedByName()
    {
        using var folder = new TempFolder();
        using var corpus = TinyRuns.Train();
        var config = TinyRuns.Config(steps: 1);
        var checkpoint = Path.Combine(folder.Path, "ckpt");
        CheckpointTests.Losses(config, corpus, checkpoint, null, null);
        var requested = config with { Train = config.Train with { UpdateInBackward = true } };
        var error = Assert.Throws<PeerSharpException>(() => TrainingSetup.Resume(checkpoint, requested));
        Assert.StartsWith($"checkpoint '{checkpoint}' was trained with updateInBackward off, not on;", error.Message);
    }

    [Fact]
    public void RefusedWithSeveralRanksOrWithoutTablesToUpdate()
    {
        using var layer = new Peer(ModelDim, Options);
        using var optimizer = OptimizerFactory.Create(layer, new TrainConfig { UpdateInBackward = true });
        var ranks = Assert.Throws<PeerSharpException>(() => TableUpdatesInBackward.Attach(layer, optimizer, 1, null, 2));
        Assert.StartsWith("updateInBackward cannot train on 2 ranks:", ranks.Message);

        using var withoutOption = OptimizerFactory.Create(layer, new TrainConfig());
        var without = Assert.Throws<PeerSharpException>(() => TableUpdatesInBackward.Attach(layer, withoutOption, 1));
        Assert.StartsWith("updateInBackward needs PEER tables on the fused kernel", without.Message);

        using var memory = new ProductKeyMemory(ModelDim, new PkmOptions { SubKeyCount = 8, HeadCount = 2, TopK = 2, KeyDim = 8 });
        using var memoryOptimizer = OptimizerFactory.Create(memory, new TrainConfig { UpdateInBackward = true });
        var noPeer = Assert.Throws<PeerSharpException>(() => TableUpdatesInBackward.Attach(memory, memoryOptimizer, 1));
        Assert.StartsWith("updateInBackward is set, but the model has no PEER layer", noPeer.Message);

        var tiny = TinyRuns.Config(1);
        var plain = tiny with { Model = tiny.Model with { PeerOptions = tiny.Model.PeerOptions with { Kernel = PeerSharp.Kernels.KernelChoice.Plain } }, Train = tiny.Train with { UpdateInBackward = true } };
        var config = Assert.Throws<PeerSharpException>(plain.Validate);
        Assert.Equal("updateInBackward needs a PEER block on the fused kernel, but this model's blocks are peer,dense with the plain PEER kernel; expected a peer block and the fused kernel (or updateInBackward off)", config.Message);
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
