using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

public class OptimizerFactoryTests
{
    static ModelConfig Config(ExpertKernel kernel, string sparseBlocks = "middle") => new()
    {
        ContextLength = 8, ModelDim = 16, LayerCount = 3, AttentionHeads = 2, SparseBlocks = sparseBlocks,
        Peer = new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4, Kernel = kernel },
    };

    [Fact]
    public void FusedTablesGetSparseAdamWAndTheRestDenseAdamW()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(ExpertKernel.Fused));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig());
        var parts = Assert.IsType<CompositeOptimizer>(optimizer).Parts;
        var sparse = Assert.IsType<SparseAdamW>(parts[1]);
        Assert.Equal(["blocks.1.ffn.down.weight", "blocks.1.ffn.up.weight"], sparse.ParameterNames.Order());
        var dense = Assert.IsType<AdamW>(parts[0]);
        Assert.Equal(model.named_parameters().Count() - 2, dense.ParameterNames.Count());
    }

    [Fact]
    public void StateNamesDoNotDependOnTheKernel()
    {
        using var scope = NewDisposeScope();
        using var fusedModel = new TransformerLM(Config(ExpertKernel.Fused));
        using var plainModel = new TransformerLM(Config(ExpertKernel.Plain));
        using var fused = OptimizerFactory.Create(fusedModel, new TrainConfig());
        using var plain = OptimizerFactory.Create(plainModel, new TrainConfig());
        Assert.Equal(plain.StateDict().Keys.Order(), fused.StateDict().Keys.Order());
        fused.LoadStateDict(plain.StateDict());
    }

    [Fact]
    public void ModelWithoutPeerGetsOneAdamW()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(ExpertKernel.Fused, sparseBlocks: "none"));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig());
        Assert.IsType<AdamW>(optimizer);
    }

    [Fact]
    public void ExpertLearningRateIsFixed()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Config(ExpertKernel.Fused));
        using var optimizer = OptimizerFactory.Create(model, new TrainConfig { ExpertLearningRate = 1e-2 });
        var tokens = randint(256, [2, 8], dtype: ScalarType.Int64);
        model.Loss(tokens, tokens).backward();
        var peer = model.PeerLayers.Single();
        var down = peer.Down.detach().clone();
        var keys = peer.SubKeys.detach().clone();
        optimizer.Step(0);   // the schedule says 0: only the expert tables, at their fixed rate, move
        Assert.True(peer.SubKeys.eq(keys).all().item<bool>());
        Assert.False(peer.Down.eq(down).all().item<bool>());
    }
}
