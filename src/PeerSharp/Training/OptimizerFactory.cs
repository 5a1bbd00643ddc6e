using PeerSharp.Model;
using TorchSharp.Modules;

namespace PeerSharp.Training;

/// <summary>Builds the optimizer of a training run from the model's named parameters.</summary>
public static class OptimizerFactory
{
    /// <summary>
    /// AdamW over all parameters; weight decay only on weight matrices. Norm gains, biases (1-D) and
    /// PEER's product keys (3-D, [2, n, d_key/2]) are not decayed: shrinking keys would only blur retrieval.
    /// </summary>
    public static IOptimizer Create(TransformerLM model, TrainConfig config)
    {
        var named = model.named_parameters().Select(p => (p.name, p.parameter, DecayFor(p.parameter, config.WeightDecay)));
        return new AdamW(named, config.Beta1, config.Beta2);
    }

    static double DecayFor(Parameter parameter, double weightDecay) => parameter.dim() == 2 ? weightDecay : 0;
}
