using PeerSharp.Config;
using PeerSharp.Data;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>
/// The batches a run trains on: random windows of the training text (<see cref="BatchSampler"/>) and, with
/// experience replay (<see cref="TrainConfig.ReplayFraction"/>), the last rows of every batch drawn from the replay
/// buffer instead. Both samplers are pure functions of (seed, step), so a resumed run replays what the uninterrupted
/// one would have.
/// </summary>
static class TrainingBatches
{
    /// <summary>Seed offset of the replay sampler, so its windows are independent of the training text's.</summary>
    const long ReplaySeed = 0x5265706C6179;   // "Replay"

    /// <summary>
    /// The batch of each step (B rows of <paramref name="sequenceLength"/> tokens) for <paramref name="train"/>: all from
    /// <paramref name="text"/>, or its first B − r rows from it and r = <see cref="TrainConfig.ReplayRows"/> from the first
    /// <see cref="TrainConfig.ReplayTokens"/> of <paramref name="replay"/>.
    /// </summary>
    public static Func<long, (Tensor Input, Tensor Target)> Create(TrainConfig train, int sequenceLength, TokenCorpus text, TokenCorpus? replay)
    {
        if (train.ReplayFraction == 0)
        {
            var sampler = new BatchSampler(text, train.BatchSize, sequenceLength, train.Seed);
            return sampler.Batch;
        }
        if (replay is null) throw new PeerSharpException($"replay fraction {train.ReplayFraction} needs a replay text (an earlier domain's training text); none was given");
        var rows = train.ReplayRows();
        var buffer = train.ReplayTokens is { } tokens && tokens < replay.TokenCount ? replay.Slice(0, tokens) : replay;
        TokenWindows.Validate(buffer, rows, sequenceLength, "the replay buffer");
        var fresh = new BatchSampler(text, train.BatchSize - rows, sequenceLength, train.Seed);
        var replayed = new BatchSampler(buffer, rows, sequenceLength, train.Seed ^ ReplaySeed);
        return step =>
        {
            var (input, target) = fresh.Batch(step);
            var (oldInput, oldTarget) = replayed.Batch(step);
            using (input) using (target) using (oldInput) using (oldTarget)
                return (cat([input, oldInput]), cat([target, oldTarget]));
        };
    }
}
