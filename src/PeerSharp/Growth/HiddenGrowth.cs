using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Growth;

/// <summary>
/// Grows every dense feed-forward of a model from H = m·d_model to H2 = m2·d_model hidden units: the dense
/// counterpart of <see cref="ExpertGrowth"/>, the baseline "a dense model with a grown feed-forward" of the lifelong
/// experiment (docs/LIFELONG.md). Old unit j keeps its row j of fc (weight and bias) and column j of proj, with their
/// optimizer moments; new units get fc rows drawn as in a fresh layer and proj columns of zero, so the grown model
/// computes exactly what the old one did until the new units learn. Frozen with <see cref="Config.FreezeConfig.OldHiddenUnits"/>,
/// only the new units (and whatever else is not frozen) train.
/// </summary>
public static class HiddenGrowth
{
    /// <summary>The config of a model grown to a feed-forward multiplier of <paramref name="multiplier"/>.</summary>
    public static Config.RunConfig GrownConfig(Config.RunConfig config, int multiplier) =>
        config with { Model = config.Model with { FeedForwardMultiplier = multiplier } };

    /// <summary>
    /// Grows a checkpoint into <paramref name="folder"/> (FOLDER/checkpoint.json and its tensor files, and the resolved
    /// config.json), at the same step; returns the new sidecar's path.
    /// </summary>
    public static string GrowCheckpoint(string checkpoint, string folder, int multiplier)
    {
        var (model, optimizer, info) = TrainingSetup.Resume(checkpoint);
        using var _ = model;
        using var __ = optimizer;
        var config = info.Config;
        if (!config.Model.FeedForwardKinds().Contains(FeedForwardKind.Dense))
            throw new PeerSharpException("the checkpoint's model has no dense feed-forward to grow");
        if (config.Model.FeedForwardKinds().Contains(FeedForwardKind.Moe))
            throw new PeerSharpException("growing the hidden units of a model with MoE layers is not built: their experts share the multiplier");
        if (multiplier <= config.Model.FeedForwardMultiplier)
            throw new PeerSharpException($"new feed-forward multiplier {multiplier} must be above the model's {config.Model.FeedForwardMultiplier}");
        var grownConfig = GrownConfig(config, multiplier);
        grownConfig.Validate();
        var (grown, grownOptimizer) = TrainingSetup.Create(grownConfig);
        using var ___ = grown;
        using var ____ = grownOptimizer;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            int hidden = config.Model.HiddenDim;
            var plans = new Dictionary<string, Action<Tensor, Tensor>>();
            foreach (var (name, module) in grown.named_modules())
            {
                if (module is not DenseFeedForward) continue;
                plans[$"{name}.fc.weight"] = (from, to) => to.narrow(0, 0, hidden).copy_(from);     // [H, d] into [H2, d]; new rows keep their fresh draw
                plans[$"{name}.fc.bias"] = (from, to) => to.narrow(0, 0, hidden).copy_(from);       // [H] into [H2]
                plans[$"{name}.proj.weight"] = (from, to) =>                                        // [d, H] into [d, H2]; new columns 0
                {
                    to.zero_();
                    to.narrow(1, 0, hidden).copy_(from);
                };
            }
            ExpertGrowth.CopyInto(model, optimizer, grown, grownOptimizer, plans);                    // moments of new units start at zero
        }
        return ExpertGrowth.SaveGrown(folder, grown, grownOptimizer, grownConfig, info);
    }
}
