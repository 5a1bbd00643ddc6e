using static TorchSharp.torch;

namespace PeerSharp.Data;

/// <summary>What <see cref="BatchSampler"/> and <see cref="SequentialBatches"/> share: checking sizes and
/// turning window starts into (input, target) tensors.</summary>
internal static class TokenWindows
{
    /// <exception cref="PeerSharpException">A size is not positive, or the corpus is shorter than one window.</exception>
    public static void Validate(TokenCorpus corpus, int batchSize, int sequenceLength, string what = "the corpus")
    {
        if (batchSize < 1)
            throw new PeerSharpException($"batch size {batchSize} is not valid; expected a positive number");
        if (sequenceLength < 1)
            throw new PeerSharpException($"sequence length {sequenceLength} is not valid; expected a positive number");
        if (corpus.TokenCount < sequenceLength + 1L)
            throw new PeerSharpException($"{what} has {corpus.TokenCount} tokens but sequence length {sequenceLength} needs at least {sequenceLength + 1L}");
    }

    /// <summary>
    /// Reads the <c>sequenceLength + 1</c> tokens at each start; input is the first
    /// <c>sequenceLength</c>, target the last <c>sequenceLength</c>.
    /// </summary>
    public static (Tensor input, Tensor target) Read(TokenCorpus corpus, IReadOnlyList<long> starts, int sequenceLength)
    {
        int rows = starts.Count;
        var input = new long[rows * sequenceLength];
        var target = new long[rows * sequenceLength];
        var window = new long[sequenceLength + 1];
        for (int row = 0; row < rows; row++)
        {
            corpus.CopyTokens(starts[row], window);
            window.AsSpan(0, sequenceLength).CopyTo(input.AsSpan(row * sequenceLength));
            window.AsSpan(1, sequenceLength).CopyTo(target.AsSpan(row * sequenceLength));
        }
        long[] shape = [rows, sequenceLength];
        return (tensor(input, shape), tensor(target, shape)); // (B, T) each
    }
}
