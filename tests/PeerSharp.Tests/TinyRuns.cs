using PeerSharp.Config;
using PeerSharp.Data;

namespace PeerSharp.Tests;

/// <summary>Shared pieces for tests that train the tiny preset on the bundled books.</summary>
static class TinyRuns
{
    /// <summary>The tiny preset with a given number of steps and no periodic checkpoints.</summary>
    public static RunConfig Config(int steps, int evalInterval = 1000) => Presets.Get("tiny") with
    {
        Train = Presets.Get("tiny").Train with { Steps = steps, EvalInterval = evalInterval, CheckpointInterval = 0 },
    };

    /// <summary>The tiny preset with a given number of steps and table optimizer state, no periodic checkpoints.</summary>
    public static RunConfig Config(int steps, TableOptimizerState tableState)
    {
        var config = Config(steps);
        return config with { Train = config.Train with { TableState = tableState } };
    }

    public static TokenCorpus Train() => TokenCorpus.Build(TextSource.Open(BundledCorpus.TrainPath), new ByteTokenizer());

    public static TokenCorpus Validation() => TokenCorpus.Build(TextSource.Open(BundledCorpus.ValidationPath), new ByteTokenizer());
}
