using static TorchSharp.torch;

namespace PeerSharp.Data;

/// <summary>
/// Training batches of random windows from a <see cref="TokenCorpus"/>. The windows of step <c>s</c> are a
/// pure function of <c>(seed, s)</c>, with no state carried between steps, so a run resumed from a
/// checkpoint at step <c>s</c> sees exactly the data the uninterrupted run would have seen.
/// </summary>
public sealed class BatchSampler
{
    private readonly TokenCorpus corpus;

    /// <param name="corpus">The tokens to sample from.</param>
    /// <param name="batchSize">Windows per batch.</param>
    /// <param name="sequenceLength">Input tokens per window; each window reads one more token for the target.</param>
    /// <param name="seed">Selects the sequence of batches.</param>
    /// <exception cref="PeerSharpException">A size is not positive, or the corpus is shorter than one window.</exception>
    public BatchSampler(TokenCorpus corpus, int batchSize, int sequenceLength, long seed)
    {
        TokenWindows.Validate(corpus, batchSize, sequenceLength);
        this.corpus = corpus;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        Seed = seed;
    }

    /// <summary>Windows per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Input tokens per window.</summary>
    public int SequenceLength { get; }

    /// <summary>The seed the batches derive from.</summary>
    public long Seed { get; }

    /// <summary>
    /// The batch for training step <paramref name="step"/>: <paramref name="step"/> picks
    /// <see cref="BatchSize"/> window starts uniformly from every position that leaves room for
    /// <c>SequenceLength + 1</c> tokens.
    /// </summary>
    /// <returns>
    /// Int64 tensors of shape (BatchSize, SequenceLength), owned by the caller; <c>target[b, t]</c> is the
    /// token after <c>input[b, t]</c>.
    /// </returns>
    public (Tensor input, Tensor target) Batch(long step)
    {
        long windowStarts = corpus.TokenCount - SequenceLength;
        var starts = new long[BatchSize];
        // Counter-based: the state depends on (seed, step) only, never on the batches drawn before.
        ulong state = Mix((ulong)Seed ^ Mix((ulong)step + 0x9E3779B97F4A7C15UL));
        for (int row = 0; row < BatchSize; row++)
            starts[row] = (long)UniformBelow(ref state, (ulong)windowStarts);
        return TokenWindows.Read(corpus, starts, SequenceLength);
    }

    /// <summary>An unbiased draw from <c>[0, bound)</c> by Lemire's multiply-and-reject method.</summary>
    private static ulong UniformBelow(ref ulong state, ulong bound)
    {
        ulong threshold = (0 - bound) % bound;
        while (true)
        {
            UInt128 product = (UInt128)Next(ref state) * bound;
            if ((ulong)product >= threshold)
                return (ulong)(product >> 64);
        }
    }

    /// <summary>SplitMix64: a fixed, platform-independent generator, unlike <see cref="Random"/>'s unspecified one.</summary>
    private static ulong Next(ref ulong state)
    {
        state += 0x9E3779B97F4A7C15UL;
        return Mix(state);
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
