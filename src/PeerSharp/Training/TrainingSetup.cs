using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>Builds the model and optimizer of a run, fresh or from a checkpoint.</summary>
public static class TrainingSetup
{
    /// <summary>A freshly initialised model (seeded by the config) and its optimizer.</summary>
    public static (TransformerLM Model, IOptimizer Optimizer) Create(RunConfig config)
    {
        config.Validate();
        manual_seed(config.Train.Seed);
        var model = new TransformerLM(config.Model);
        return (model, OptimizerFactory.Create(model, config.Train));
    }

    /// <summary>
    /// Model and optimizer restored from a checkpoint, to continue training. A <paramref name="requested"/> config
    /// (from the command line) must describe the same model and table optimizer state; its other training settings
    /// may differ (more steps, say).
    /// </summary>
    public static (TransformerLM Model, IOptimizer Optimizer, Checkpoint Info) Resume(string checkpointPath, RunConfig? requested = null)
    {
        var info = Checkpoint.Read(checkpointPath);
        if (requested is not null && requested.Model != info.Config.Model)
            throw new PeerSharpException($"checkpoint '{checkpointPath}' holds a different model than the one requested ({Difference(info.Config.Model, requested.Model)}); resume without model overrides or start a new run");
        if (requested is not null && requested.Train.TableState != info.Config.Train.TableState)
            throw new PeerSharpException($"checkpoint '{checkpointPath}' was trained with table state '{EnumNames.Name(info.Config.Train.TableState)}', not '{EnumNames.Name(requested.Train.TableState)}'; resume with the state it was written with or start a new run");
        if (requested is not null && requested.Train.UpdateInBackward != info.Config.Train.UpdateInBackward)
            throw new PeerSharpException($"checkpoint '{checkpointPath}' was trained with updateInBackward {(info.Config.Train.UpdateInBackward ? "on" : "off")}, not {(requested.Train.UpdateInBackward ? "on" : "off")}; its optimizer state differs (table_gradient_scale), so resume with the setting it was written with or start a new run");
        var config = requested is null ? info.Config : info.Config with { Train = requested.Train };
        var (model, optimizer) = Create(config);
        try
        {
            // The step is the loaded sidecar's: a save since the read above (a run still training) moved it on.
            var loaded = Checkpoint.Load(checkpointPath, model, optimizer);
            return (model, optimizer, loaded with { Config = config });
        }
        catch
        {
            optimizer.Dispose();
            model.Dispose();
            throw;
        }
    }

    static string Difference(ModelConfig saved, ModelConfig requested)
    {
        var a = System.Text.Json.JsonSerializer.SerializeToNode(saved, RunConfig.Json)!.AsObject();
        var b = System.Text.Json.JsonSerializer.SerializeToNode(requested, RunConfig.Json)!.AsObject();
        foreach (var (key, value) in a)
            if (value?.ToJsonString() != b[key]?.ToJsonString())
                return $"{key}: checkpoint has {value?.ToJsonString()}, requested {b[key]?.ToJsonString()}";
        return "a setting differs";
    }
}
