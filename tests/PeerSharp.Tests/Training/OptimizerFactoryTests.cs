using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class OptimizerFactoryTests
{
    static ModelConfig Config(KernelChoice kernel, string sparseBlocks = "middle") => new()
    {
        ContextLength = 8, ModelDim = 16, LayerCount = 3, AttentionHeads = 2, SparseBlocks = sparseBlocks,
        PeerOptions = new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4, Kernel = kernel },
    };

    [Fact]
    public void FusedTablesGetSparseAdamWAndTheRestDenseAdamW()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(KernelChoice.Fused));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig());
        var parts = Assert.IsType<CompositeOptimizer>(optimizer).Parts;
        var sparse = Assert.IsType<SparseAdamW>(parts[1]);
        Assert.Equal(["blocks.1.ffn.down.weight", "blocks.1.ffn.up.weight"], sparse.ParameterNames.Order());
        var dense = Assert.IsType<AdamW>(parts[0]);
        Assert.Equal(model.named_parameters().Count() - 2, dense.ParameterNames.Count());
    }

    [Fact]
    public void PkmValueTableGetsSparseAdamW()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(KernelChoice.Fused) with
        {
            FeedForward = FeedForwardKind.Pkm,
            PkmOptions = new PkmOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        });
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig());
        var sparse = Assert.IsType<SparseAdamW>(Assert.IsType<CompositeOptimizer>(optimizer).Parts[1]);
        Assert.Equal(["blocks.1.ffn.values.weight"], sparse.ParameterNames);
    }

    [Fact]
    public void TablesKeepTheConfiguredStateAndTheRestFullAdamW()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(KernelChoice.Fused));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig { TableState = TableOptimizerState.RowWiseNoMomentum });
        var sparse = Assert.IsType<SparseAdamW>(Assert.IsType<CompositeOptimizer>(optimizer).Parts[1]);
        Assert.Equal(TableOptimizerState.RowWiseNoMomentum, sparse.State);
        var state = optimizer.StateDict();
        Assert.Equal([16], state["exp_avg_sq_row.blocks.1.ffn.down.weight"].shape);   // one value per row, N = 4²
        Assert.DoesNotContain("exp_avg.blocks.1.ffn.up.weight", state.Keys);
        Assert.Contains("exp_avg.blocks.0.ffn.fc.weight", state.Keys);
    }

    [Fact]
    public void WithFullMomentsStateNamesDoNotDependOnTheKernel()
    {
        // The plain kernel's tables have dense gradients and keep AdamW moments; with the full table state the fused
        // kernel's sparse tables keep the same, so a checkpoint moves between the two.
        using var scope = NewDisposeScope();
        using var fusedModel = new TransformerLM(Config(KernelChoice.Fused));
        using var plainModel = new TransformerLM(Config(KernelChoice.Plain));
        var full = new TrainConfig { TableState = TableOptimizerState.Full };
        using var fused = OptimizerFactory.Create(fusedModel, full);
        using var plain = OptimizerFactory.Create(plainModel, full);
        Assert.Equal(plain.StateDict().Keys.Order(), fused.StateDict().Keys.Order());
        fused.LoadStateDict(plain.StateDict());
    }

    [Fact]
    public void ModelWithoutPeerGetsOneAdamW()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(KernelChoice.Fused, sparseBlocks: "none"));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig());
        Assert.IsType<AdamW>(optimizer);
    }

    [Fact]
    public void KeyLearningRateScaleMultipliesTheScheduledRateOfTheKeysOnly()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(KernelChoice.Fused));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig { KeyLearningRateScale = 0.1, WeightDecay = 0 });
        var tokens = randint(256, [2, 8], dtype: ScalarType.Int64);
        model.Loss(tokens, tokens).backward();
        var peer = model.PeerLayers.Single();
        var keys = peer.Retrieval.SubKeys.detach().clone();
        var query = peer.Retrieval.QueryWeight.detach().clone();
        optimizer.Step(1e-2);
        // Adam's first step moves every element with a gradient by the rate itself: 1e-3 for the keys, 1e-2 for the rest.
        Assert.Equal(1e-3, (peer.Retrieval.SubKeys - keys).abs().max().item<float>(), 5);
        Assert.Equal(1e-2, (peer.Retrieval.QueryWeight - query).abs().max().item<float>(), 4);
    }

    [Fact]
    public void ExpertLearningRateIsFixed()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(KernelChoice.Fused));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig { ExpertLearningRate = 1e-2 });
        var tokens = randint(256, [2, 8], dtype: ScalarType.Int64);
        model.Loss(tokens, tokens).backward();
        var peer = model.PeerLayers.Single();
        var down = peer.Down.detach().clone();
        var keys = peer.Retrieval.SubKeys.detach().clone();
        optimizer.Step(0);   // the schedule says 0: only the expert tables, at their fixed rate, move
        Assert.True(peer.Retrieval.SubKeys.eq(keys).all().item<bool>());
        Assert.False(peer.Down.eq(down).all().item<bool>());
    }

    [Fact]
    public void ResumeFromSavedModelAndOptimizerStateContinuesTheSameLossCurve()
    {
        using var scope = NewDisposeScope();
        var config = new TrainConfig { ExpertLearningRate = 5e-3 };
        var g = new Generator(21);
        var batches = Enumerable.Range(0, 5).Select(_ => randint(256, [4, 9], dtype: ScalarType.Int64, generator: g)).ToArray();
        float Step(TransformerLM model, IOptimizer optimizer, Tensor batch)
        {
            using var step = NewDisposeScope();
            var loss = model.Loss(batch[.., ..^1].contiguous(), batch[.., 1..].contiguous());
            loss.backward();
            GradientClipping.ClipGlobalNorm(model.parameters(), 1.0);
            optimizer.Step(1e-3);
            optimizer.ZeroGrad();
            return loss.item<float>();
        }

        manual_seed(3);
        using var model = new TransformerLM(Config(KernelChoice.Fused));
        using var optimizer = OptimizerFactory.Create(model, config);
        for (int i = 0; i < 3; i++) Step(model, optimizer, batches[i]);
        // The checkpoint: copies of the weights (with BatchNorm statistics) and of the optimizer state.
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var state = optimizer.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var expected = new[] { Step(model, optimizer, batches[3]), Step(model, optimizer, batches[4]) };

        manual_seed(4);   // a different initialisation, all of it overwritten by the checkpoint
        using var resumed = new TransformerLM(Config(KernelChoice.Fused));
        resumed.load_state_dict(weights);
        using var resumedOptimizer = OptimizerFactory.Create(resumed, config);
        resumedOptimizer.LoadStateDict(state);
        Assert.Equal(3, resumedOptimizer.StepCount);
        var actual = new[] { Step(resumed, resumedOptimizer, batches[3]), Step(resumed, resumedOptimizer, batches[4]) };
        Assert.Equal(expected, actual);
    }
}
