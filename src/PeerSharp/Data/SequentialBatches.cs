using System.Collections;
using static TorchSharp.torch;

namespace PeerSharp.Data;

/// <summary>
/// Evaluation batches: non-overlapping windows from the start of a <see cref="TokenCorpus"/>, in order, so
/// every evaluation scores the same tokens. Only whole windows are used; the last batch may have fewer
/// than <c>batchSize</c> rows.
/// </summary>
public sealed class SequentialBatches : IEnumerable<(Tensor input, Tensor target)>
{
    private readonly TokenCorpus corpus;
    private readonly int batchSize;
    private readonly int sequenceLength;

    /// <param name="corpus">The tokens to evaluate on.</param>
    /// <param name="batchSize">Windows per batch.</param>
    /// <param name="sequenceLength">Input tokens per window.</param>
    /// <param name="maxTokens">The most target tokens to cover, such as a fixed evaluation budget.</param>
    /// <exception cref="PeerSharpException">
    /// A size is not positive, the corpus is shorter than one window, or <paramref name="maxTokens"/> is
    /// less than one window.
    /// </exception>
    public SequentialBatches(TokenCorpus corpus, int batchSize, int sequenceLength, long maxTokens)
    {
        TokenWindows.Validate(corpus, batchSize, sequenceLength);
        if (maxTokens < sequenceLength)
            throw new PeerSharpException($"an evaluation budget of {maxTokens} tokens is less than one window; expected at least the sequence length {sequenceLength}");
        this.corpus = corpus;
        this.batchSize = batchSize;
        this.sequenceLength = sequenceLength;
        // Window w reads tokens [w*T, w*T + T], so the last window needs its target token to exist.
        WindowCount = Math.Min((corpus.TokenCount - 1) / sequenceLength, maxTokens / sequenceLength);
    }

    /// <summary>The number of windows, over all batches.</summary>
    public long WindowCount { get; }

    /// <summary>The number of target tokens scored, <c>WindowCount * sequenceLength</c>.</summary>
    internal long TargetTokenCount => WindowCount * sequenceLength;

    /// <summary>
    /// Enumerates (input, target) pairs of Int64 tensors of shape (rows, sequenceLength), owned by the caller.
    /// </summary>
    public IEnumerator<(Tensor input, Tensor target)> GetEnumerator()
    {
        for (long first = 0; first < WindowCount; first += batchSize)
        {
            long rows = Math.Min(batchSize, WindowCount - first);
            var starts = new long[rows];
            for (long row = 0; row < rows; row++)
                starts[row] = (first + row) * sequenceLength;
            yield return TokenWindows.Read(corpus, starts, sequenceLength);
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
