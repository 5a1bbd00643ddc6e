using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Checkpoints;

/// <summary>
/// Writes the checkpoint of a freshly initialised model without ever holding its expert tables in memory
/// (DESIGN.md "Memory-mapped tables"): the model is built with placeholder tables (<see cref="TableInit"/>), and
/// each table is drawn from its layer's initial distribution (<see cref="IExpertRetrieval.InitialiseRows"/>) one
/// slice of rows at a time as the file is written. So a model whose tables exceed memory (N = 4096² at d_model 256:
/// 34 GB) can be made on any machine with the disk for it, then evaluated or sampled with its tables mapped.
/// The checkpoint has no optimizer state: it is for inference (train a model that fits with <c>peer train</c>).
/// Its tables are a fresh draw of the same distribution as a fresh run's (TrainingSetup.Create), seeded by the
/// config, but not the same numbers (they are drawn in slices, after the other parameters).
/// </summary>
public static class FreshCheckpoint
{
    /// <summary>
    /// Writes FOLDER/checkpoint.json (step 0) and its model file, plus the resolved config.json; returns the sidecar's
    /// path. Reports the fraction of the model file written to <paramref name="progress"/>.
    /// </summary>
    public static string Write(RunConfig config, string folder, IProgress<double>? progress = null)
    {
        config.Validate();
        var bytes = config.Model.ParameterBytes();
        Directory.CreateDirectory(folder);
        var free = new DriveInfo(Path.GetFullPath(folder)).AvailableFreeSpace;
        if (bytes > free)
            throw new PeerSharpException($"the model file needs {bytes / 1e9:N1} GB but '{folder}' has {free / 1e9:N1} GB free; expected a folder on a larger disk or a smaller model (--experts, --d-model)");

        manual_seed(config.Train.Seed);
        TransformerLM model;
        using (TableInit.Defer()) model = new TransformerLM(config.Model);
        using var _ = model;
        var drawn = new Dictionary<string, Action<Tensor>>();
        foreach (var (prefix, layer) in RetrievalLayers.Of(model))
            foreach (var (name, _) in layer.Tables)
                drawn[RetrievalLayers.Prefixed(prefix, name)] = rows => layer.InitialiseRows(name, rows);
        var written = progress is null ? null : new Fraction(progress, bytes);
        var sidecar = Checkpoint.Save(Checkpoint.PathInFolder(folder), model, null, new Checkpoint { Config = config, Step = 0 },
                                      CheckpointFiles.Durable, drawn, written);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
        return sidecar;
    }

    /// <summary>Bytes written as a fraction of the model's size, reported on the writing thread (Progress&lt;T&gt; would post them out of order).</summary>
    sealed class Fraction(IProgress<double> progress, long total) : IProgress<long>
    {
        public void Report(long done) => progress.Report(Math.Min(1, (double)done / total));
    }
}
