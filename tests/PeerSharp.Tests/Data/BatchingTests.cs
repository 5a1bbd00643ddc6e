using PeerSharp.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Data;

public sealed class BatchingTests : IDisposable
{
    private readonly TempFolder temp = new();
    private readonly TokenCorpus corpus;
    private readonly long[] tokens;

    public BatchingTests()
    {
        // Every 4-byte window of this text is distinct, so a window's content identifies its position.
        string text = string.Concat(Enumerable.Range(0, 300).Select(i => $"{i:D3},"));
        corpus = TokenCorpus.Build(TextSource.Open(temp.Write("numbers.txt", text)), new ByteTokenizer(), temp.File("cache"));
        tokens = new long[corpus.TokenCount];
        corpus.CopyTokens(0, tokens);
    }

    public void Dispose()
    {
        corpus.Dispose();
        temp.Dispose();
    }

    [Fact]
    public void ABatchIsInt64WindowsWithTargetsShiftedByOne()
    {
        var sampler = new BatchSampler(corpus, batchSize: 4, sequenceLength: 16, seed: 1);

        var (input, target) = sampler.Batch(0);
        using (input)
        using (target)
        {
            Assert.Equal([4L, 16L], input.shape);
            Assert.Equal([4L, 16L], target.shape);
            Assert.Equal(ScalarType.Int64, input.dtype);
            Assert.Equal(ScalarType.Int64, target.dtype);
            long[] inputs = input.data<long>().ToArray();
            long[] targets = target.data<long>().ToArray();
            for (int row = 0; row < 4; row++)
            {
                long start = PositionOf(inputs.AsSpan(row * 16, 16));
                Assert.Equal(tokens.AsSpan((int)start + 1, 16).ToArray(), targets.AsSpan(row * 16, 16).ToArray());
            }
        }
    }

    [Fact]
    public void TheBatchOfAStepDependsOnlyOnSeedAndStep()
    {
        var sampler = new BatchSampler(corpus, batchSize: 8, sequenceLength: 16, seed: 42);
        var resumed = new BatchSampler(corpus, batchSize: 8, sequenceLength: 16, seed: 42);
        var otherSeed = new BatchSampler(corpus, batchSize: 8, sequenceLength: 16, seed: 43);

        long[] step7 = Inputs(sampler, 7);
        Inputs(sampler, 8);

        Assert.Equal(step7, Inputs(sampler, 7));
        Assert.Equal(step7, Inputs(resumed, 7));
        Assert.NotEqual(step7, Inputs(sampler, 8));
        Assert.NotEqual(step7, Inputs(otherSeed, 7));
    }

    [Fact]
    public void WindowsCoverTheWholeCorpusUpToTheLastTarget()
    {
        var sampler = new BatchSampler(corpus, batchSize: 64, sequenceLength: 16, seed: 3);
        var starts = new HashSet<long>();

        for (long step = 0; step < 400; step++)
        {
            long[] inputs = Inputs(sampler, step);
            for (int row = 0; row < 64; row++)
            {
                starts.Add(PositionOf(inputs.AsSpan(row * 16, 16)));
            }
        }

        // 25,600 draws from 1,184 possible starts miss one with probability below one in a million.
        Assert.Equal(corpus.TokenCount - 16, starts.Count);
        Assert.Equal(corpus.TokenCount - 17, starts.Max());
    }

    [Fact]
    public void ACorpusShorterThanOneWindowIsRejected()
    {
        using var shortText = new TempFolder();
        using var tiny = TokenCorpus.Build(TextSource.Open(shortText.Write("tiny.txt", "abc")), new ByteTokenizer(), shortText.File("cache"));

        var error = Assert.Throws<PeerSharpException>(() => new BatchSampler(tiny, batchSize: 2, sequenceLength: 8, seed: 0));

        Assert.Equal("the corpus has 3 tokens but sequence length 8 needs at least 9", error.Message);
        Assert.Throws<PeerSharpException>(() => new SequentialBatches(tiny, batchSize: 2, sequenceLength: 8, maxTokens: 100));
    }

    [Fact]
    public void SequentialBatchesWalkNonOverlappingWindowsInOrder()
    {
        // 1,200 tokens hold 119 whole windows of 10 (the last target is token 1,190).
        var batches = new SequentialBatches(corpus, batchSize: 50, sequenceLength: 10, maxTokens: long.MaxValue);
        var inputs = new List<long>();
        var targets = new List<long>();
        var rows = new List<long>();

        foreach (var (input, target) in batches)
        {
            using (input)
            using (target)
            {
                rows.Add(input.shape[0]);
                inputs.AddRange(input.data<long>().ToArray());
                targets.AddRange(target.data<long>().ToArray());
            }
        }

        Assert.Equal([50L, 50L, 19L], rows);
        Assert.Equal(1190, batches.TargetTokenCount);
        Assert.Equal(tokens[..1190], inputs);
        Assert.Equal(tokens[1..1191], targets);
    }

    [Fact]
    public void SequentialBatchesStopAtTheTokenBudget()
    {
        var batches = new SequentialBatches(corpus, batchSize: 3, sequenceLength: 10, maxTokens: 45);

        var rows = new List<long>();
        foreach (var (input, target) in batches)
        {
            rows.Add(input.shape[0]);
            input.Dispose();
            target.Dispose();
        }

        Assert.Equal(4, batches.WindowCount);
        Assert.Equal([3L, 1L], rows);
    }

    private long PositionOf(ReadOnlySpan<long> window)
    {
        int position = tokens.AsSpan().IndexOf(window);
        Assert.True(position >= 0, "a sampled window is not in the corpus");
        return position;
    }

    private static long[] Inputs(BatchSampler sampler, long step)
    {
        var (input, target) = sampler.Batch(step);
        using (input)
        using (target)
        {
            return input.data<long>().ToArray();
        }
    }
}
