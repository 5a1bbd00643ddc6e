using PeerSharp.Config;
using PeerSharp.Model;
using PeerSharp.Layers;

namespace PeerSharp.Tests.Training;

public class RunConfigTests
{
    [Fact]
    public void ConfigFileOverridesOnlyTheFieldsItNames()
    {
        using var folder = new TempFolder();
        var path = Path.Combine(folder.Path, "run.json");
        File.WriteAllText(path, """
            {
              "model": { "modelDim": 192, "layerCount": 6, "positions": "rotary",
                         "peer": { "subKeyCount": 256, "headCount": 8, "topK": 16, "keyDim": 128, "activation": "relu" } },
              // comments are allowed
              "train": { "steps": 3000, "learningRate": 0.002, "tableState": "row-wise-bf16", "updateInBackward": true }
            }
            """);
        var basis = Presets.Get("default");
        var config = RunConfig.Load(path, basis);

        Assert.Equal(192, config.Model.ModelDim);
        Assert.Equal(PositionKind.Rotary, config.Model.Positions);
        Assert.Equal(65536, config.Model.PeerOptions.ExpertCount);
        Assert.Equal(ExpertActivation.Relu, config.Model.PeerOptions.Activation);
        using (var model = new TransformerLM(config.Model)) Assert.Equal(192, model.PeerLayers.Single().ModelDim);
        Assert.Equal(3000, config.Train.Steps);
        Assert.Equal(TableOptimizerState.RowWiseBf16, config.Train.TableState);
        Assert.True(config.Train.UpdateInBackward);
        Assert.Equal(basis.Train.BatchSize, config.Train.BatchSize);
        Assert.Equal(basis.Model.ContextLength, config.Model.ContextLength);
        Assert.Equal(config, RunConfig.Load(WriteBack(folder.Path, config), Presets.Get("tiny")));
    }

    static string WriteBack(string folder, RunConfig config)
    {
        var path = Path.Combine(folder, "roundtrip.json");
        File.WriteAllText(path, config.ToJson());
        return path;
    }

    [Fact]
    public void UnknownFieldIsAnError()
    {
        using var folder = new TempFolder();
        var path = Path.Combine(folder.Path, "bad.json");
        File.WriteAllText(path, """{ "model": { "modelDimension": 64 } }""");
        var error = Assert.Throws<PeerSharpException>(() => RunConfig.Load(path, Presets.Get("tiny")));
        Assert.Contains("modelDimension", error.Message);
    }
}
