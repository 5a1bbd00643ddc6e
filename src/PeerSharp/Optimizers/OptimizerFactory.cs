using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Optimizers;

/// <summary>Builds the optimizer of a training run from the model's named parameters.</summary>
public static class OptimizerFactory
{
    /// <summary>
    /// The optimizer of a model (a <see cref="Model.TransformerLM"/>, or any module with PEER or PKM layers, such
    /// as one layer in the benchmarks). AdamW over all parameters; weight decay only on weight matrices. Norm
    /// gains, biases (1-D) and product keys (3-D, [2, n, d_key/2]) are not decayed: shrinking keys would only
    /// blur retrieval. The large tables of retrieval layers (PEER's down.weight and up.weight, PKM's
    /// values.weight) get an optimizer of their own: <see cref="SparseAdamW"/> where their gradients are
    /// row-sparse (fused PEER kernel, PKM's sparse embedding bag), dense AdamW otherwise, at
    /// <see cref="TrainConfig.ExpertLearningRate"/> when that is set, keeping <see cref="TrainConfig.TableState"/>
    /// per table (docs/SPARSE_UPDATES.md), and ready for <see cref="TableUpdatesInBackward"/> with
    /// <see cref="TrainConfig.UpdateInBackward"/>.
    /// </summary>
    public static IOptimizer Create(nn.Module model, TrainConfig config)
    {
        RefuseMappedTables(model);
        var peers = RetrievalLayers.Of(model);
        var named = model.named_parameters().Select(p => (p.name, p.parameter, DecayFor(p.parameter, config.WeightDecay))).ToList();
        if (peers.Count == 0) return new AdamW(named, config.Beta1, config.Beta2);

        var sparseTables = TableNames(peers.Where(p => p.Layer.SparseTableGradients));
        var denseTables = TableNames(peers.Where(p => !p.Layer.SparseTableGradients));
        var keys = config.KeyLearningRateScale is null ? [] : peers.Select(p => RetrievalLayers.Prefixed(p.name, "keys")).ToHashSet();
        var parts = new List<(IOptimizer, double?)>
        {
            (new AdamW(named.Where(p => !sparseTables.Contains(p.name) && !denseTables.Contains(p.name) && !keys.Contains(p.name)), config.Beta1, config.Beta2), null),
        };
        if (keys.Count > 0)
            parts.Add((new ScaledRate(new AdamW(named.Where(p => keys.Contains(p.name)), config.Beta1, config.Beta2), config.KeyLearningRateScale!.Value), null));
        if (sparseTables.Count > 0)
            parts.Add((new SparseAdamW(named.Where(p => sparseTables.Contains(p.name)), config.Beta1, config.Beta2, state: config.TableState, updateInBackward: config.UpdateInBackward), config.ExpertLearningRate));
        if (denseTables.Count > 0)
            parts.Add((new AdamW(named.Where(p => denseTables.Contains(p.name)), config.Beta1, config.Beta2), config.ExpertLearningRate));
        return new CompositeOptimizer([.. parts]);
    }

    static HashSet<string> TableNames(IEnumerable<(string Name, IExpertRetrieval Layer)> layers) =>
        layers.SelectMany(l => l.Layer.Tables.Select(t => RetrievalLayers.Prefixed(l.Name, t.Name))).ToHashSet();

    /// <summary>Throws when an expert table of <paramref name="model"/> is mapped from a file, and so read-only.</summary>
    internal static void RefuseMappedTables(nn.Module model)
    {
        foreach (var (prefix, layer) in RetrievalLayers.Of(model))
            foreach (var (name, table) in layer.Tables)
                if (FileMappedTensors.IsMapped(table))
                    throw new PeerSharpException($"expert table '{RetrievalLayers.Prefixed(prefix, name)}' is memory-mapped read-only from a checkpoint; load the checkpoint without mapping its tables to train it");
    }


    static double DecayFor(Parameter parameter, double weightDecay) => parameter.dim() == 2 ? weightDecay : 0;

    /// <summary>An optimizer stepped at a fixed multiple of the scheduled rate (the product keys, <see cref="TrainConfig.KeyLearningRateScale"/>).</summary>
    sealed class ScaledRate(IOptimizer inner, double scale) : IOptimizer
    {
        public long StepCount => inner.StepCount;
        public void Step(double learningRate) => inner.Step(learningRate * scale);
        public void ZeroGrad() => inner.ZeroGrad();
        public Dictionary<string, Tensor> StateDict() => inner.StateDict();
        public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state) => inner.LoadStateDict(state);
        public void Dispose() => inner.Dispose();
    }
}
