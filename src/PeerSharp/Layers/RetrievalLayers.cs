using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>Finds a model's product-key layers (PEER and PKM) and names their parameters as the model's state dict does.</summary>
static class RetrievalLayers
{
    /// <summary>The PEER and PKM layers of a model (or the model itself, when it is one), with their module names ("" for the model).</summary>
    public static List<(string name, IExpertRetrieval Layer)> Of(nn.Module model)
    {
        var layers = model.named_modules().Where(m => m.module is IExpertRetrieval).Select(m => (m.name, Layer: (IExpertRetrieval)m.module)).ToList();
        if (model is IExpertRetrieval layer) layers.Add(("", layer));
        return layers;
    }

    /// <summary>The state-dict name of a layer's <paramref name="parameter"/> in the model, the layer at <paramref name="module"/>.</summary>
    public static string Prefixed(string module, string parameter) => module.Length == 0 ? parameter : $"{module}.{parameter}";
}
