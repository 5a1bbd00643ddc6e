using System.Text.Json.Nodes;
using PeerSharp.Config;
using PeerSharp.Model;

namespace PeerSharp.Tests.Training;

/// <summary>Every training setting is checked before a run starts, with one sentence naming the bad value.</summary>
public class TrainConfigValidationTests
{
    public static TheoryData<string, TrainConfig> BadSettings => new()
    {
        { "steps 0", new TrainConfig { Steps = 0 } },
        { "batch size -1", new TrainConfig { BatchSize = -1 } },
        { "batch size 100000000", new TrainConfig { BatchSize = 100_000_000 } },
        { "learning rate", new TrainConfig { LearningRate = double.PositiveInfinity } },
        { "learning rate NaN", new TrainConfig { LearningRate = double.NaN } },
        { "learning rate 0", new TrainConfig { LearningRate = 0 } },
        { "expert learning rate", new TrainConfig { ExpertLearningRate = double.PositiveInfinity } },
        { "expert learning rate -0.1", new TrainConfig { ExpertLearningRate = -0.1 } },
        { "table optimizer state 9", new TrainConfig { TableState = (TableOptimizerState)9 } },
        { "warm-up steps -1", new TrainConfig { WarmupSteps = -1 } },
        { "minimum learning rate ratio 1.5", new TrainConfig { MinLearningRateRatio = 1.5 } },
        { "minimum learning rate ratio NaN", new TrainConfig { MinLearningRateRatio = double.NaN } },
        { "weight decay -0.1", new TrainConfig { WeightDecay = -0.1 } },
        { "weight decay", new TrainConfig { WeightDecay = double.PositiveInfinity } },
        { "β1 1", new TrainConfig { Beta1 = 1 } },
        { "β1 -0.5", new TrainConfig { Beta1 = -0.5 } },
        { "β2 1", new TrainConfig { Beta2 = 1 } },
        { "β2 NaN", new TrainConfig { Beta2 = double.NaN } },
        { "gradient clip -1", new TrainConfig { GradientClip = -1 } },
        { "gradient clip NaN", new TrainConfig { GradientClip = double.NaN } },
        { "eval interval 0", new TrainConfig { EvalInterval = 0 } },
        { "eval tokens 0", new TrainConfig { EvalTokens = 0 } },
        { "log interval 0", new TrainConfig { LogInterval = 0 } },
        { "checkpoint interval -1", new TrainConfig { CheckpointInterval = -1 } },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void EveryBadSettingIsRejectedByName(string expected, TrainConfig config)
    {
        var error = Assert.Throws<PeerSharpException>(config.Validate);
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void TheEdgesOfEveryRangeAreAccepted()
    {
        new TrainConfig { WarmupSteps = 0, MinLearningRateRatio = 0, WeightDecay = 0, Beta1 = 0, Beta2 = 0, GradientClip = 0, CheckpointInterval = 0 }.Validate();
        new TrainConfig { MinLearningRateRatio = 1, Beta1 = 0.999999, Beta2 = 0.999999, ExpertLearningRate = 1e-2 }.Validate();
    }

    [Fact]
    public void AStepOfMoreThan16MTokensIsRejected()
    {
        var config = new RunConfig { Model = new ModelConfig { ContextLength = 4096 }, Train = new TrainConfig { BatchSize = 8192, EvalTokens = 65536 } };
        var error = Assert.Throws<PeerSharpException>(config.Validate);
        Assert.Contains("batch size 8192 × context length 4096", error.Message);
    }

    [Fact]
    public void EvalTokensShorterThanOneWindowAreRejected()
    {
        var config = new RunConfig { Model = new ModelConfig { ContextLength = 128 }, Train = new TrainConfig { EvalTokens = 100 } };
        var error = Assert.Throws<PeerSharpException>(config.Validate);
        Assert.Contains("eval tokens 100", error.Message);
    }

    [Theory]
    [InlineData("""{ "model": null }""", "\"model\"")]
    [InlineData("""{ "train": null }""", "\"train\"")]
    [InlineData("""{ "model": { "peer": null } }""", "\"model.peer\"")]
    [InlineData("""{ "model": { "sparseBlocks": null } }""", "\"model.sparseBlocks\"")]
    public void ANullSectionInAConfigFileIsRejectedByName(string json, string expected)
    {
        var error = Assert.Throws<PeerSharpException>(() => RunConfig.Overlay(Presets.Get("tiny"), JsonNode.Parse(json)!.AsObject(), "config file 'run.json'"));
        Assert.Contains("config file 'run.json'", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void AModelLargerThanTheMachinesMemoryIsRejectedBeforeItIsAllocated()
    {
        var huge = new ModelConfig { ModelDim = 65536, LayerCount = 1024, AttentionHeads = 4 };
        var error = Assert.Throws<PeerSharpException>(() => huge.CheckFitsInMemory(training: false));
        Assert.Contains("GB", error.Message);
        Presets.Get("tiny").Model.CheckFitsInMemory(training: true);
    }
}
