using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Generation;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Generation;

/// <summary>Continuous batching: a request's completion is the same alone or among others; limits, stops and cancellation.</summary>
public class BatchGeneratorTests
{
    static TransformerLM TinyModel()
    {
        manual_seed(5);
        return new TransformerLM(Presets.Get("tiny").Model);
    }

    static CompletionRequest Request(ITokenizer tokenizer, string prompt, int tokens, long seed, IReadOnlyList<string>? stop = null) =>
        new(tokenizer.Encode(prompt), new SamplingOptions(tokens, Temperature: 1.0, TopK: 0, Seed: seed) { TopP = 0.95 }, stop ?? []);

    [Fact]
    public async Task EachRequestGetsTheSameCompletionAloneOrInABatch()
    {
        using var model = TinyModel();
        var tokenizer = Tokenizers.Create(model.Config.Tokenizer);
        string[] prompts = ["The ", "Once upon a time", "a", "It was the best of times, it was"];
        // 40 tokens overflow the context of 32 positions: the refill runs in the batch too.
        var requests = prompts.Select((p, i) => Request(tokenizer, p, 40 + 3 * i, seed: 100 + i)).ToList();

        var alone = new List<CompletionResult>();
        using (var generator = new BatchGenerator(model, tokenizer, new BatchGeneratorOptions { MaxBatch = 1 }))
            foreach (var request in requests)
            {
                Assert.True(generator.TrySubmit(request, default, out var completion));
                alone.Add(await completion.Result);
            }

        using var batched = new BatchGenerator(model, tokenizer, new BatchGeneratorOptions { MaxBatch = 8 });
        var completions = requests.Select(r => batched.TrySubmit(r, default, out var c) ? c : throw new InvalidOperationException("refused")).ToList();
        var together = await Task.WhenAll(completions.Select(c => c.Result));
        Assert.Equal(alone, together);
        Assert.All(together, r => Assert.Equal(FinishReason.Length, r.Reason));
        Assert.True(batched.Statistics.BatchSize.Snapshot().Sum > batched.Statistics.Steps, "no step decoded more than one sequence");
        Assert.Equal(requests.Sum(r => r.Sampling.MaxNewTokens), batched.Statistics.GeneratedTokens);
    }

    [Fact]
    public async Task PiecesAddUpToTheTextAndAStopSequenceEndsIt()
    {
        using var model = TinyModel();
        var tokenizer = Tokenizers.Create(model.Config.Tokenizer);
        using var generator = new BatchGenerator(model, tokenizer);
        Assert.True(generator.TrySubmit(Request(tokenizer, "The ", 30, seed: 3), default, out var free));
        var full = await free.Result;
        var stop = full.Text.Substring(10, 2);
        Assert.True(generator.TrySubmit(Request(tokenizer, "The ", 30, seed: 3, stop: [stop]), default, out var stopped));
        var pieces = new List<string>();
        await foreach (var piece in stopped.Pieces.ReadAllAsync()) pieces.Add(piece);
        var result = await stopped.Result;
        Assert.Equal(FinishReason.Stop, result.Reason);
        Assert.Equal(full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)], result.Text);
        Assert.Equal(result.Text, string.Concat(pieces));
    }

    [Fact]
    public async Task AFullQueueRefusesAndACancelledRequestLeavesTheBatch()
    {
        using var model = TinyModel();
        var tokenizer = Tokenizers.Create(model.Config.Tokenizer);
        using var generator = new BatchGenerator(model, tokenizer, new BatchGeneratorOptions { MaxBatch = 1, MaxQueue = 1 });
        using var cancel = new CancellationTokenSource();
        Assert.True(generator.TrySubmit(Request(tokenizer, "a", 100_000, seed: 1), cancel.Token, out var endless));
        Assert.True(generator.TrySubmit(Request(tokenizer, "b", 5, seed: 1), default, out var queued));
        Assert.False(generator.TrySubmit(Request(tokenizer, "c", 5, seed: 1), default, out _));
        Assert.Equal(1, generator.Statistics.Rejected);
        await endless.Pieces.WaitToReadAsync();
        cancel.Cancel();
        var ended = await endless.Result.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(FinishReason.Cancelled, ended.Reason);
        Assert.Equal(FinishReason.Length, (await queued.Result.WaitAsync(TimeSpan.FromSeconds(30))).Reason);
        Assert.True(await generator.DrainAsync(TimeSpan.FromSeconds(5)));
        Assert.False(generator.TrySubmit(Request(tokenizer, "d", 5, seed: 1), default, out _));
    }

    [Fact]
    public void AnImpossibleRequestIsAUserError()
    {
        using var model = TinyModel();
        var tokenizer = Tokenizers.Create(model.Config.Tokenizer);
        using var generator = new BatchGenerator(model, tokenizer);
        var tooLong = new CompletionRequest(new int[model.Config.ContextLength + 1], new SamplingOptions(5), []);
        Assert.Throws<PeerSharpException>(() => generator.TrySubmit(tooLong, default, out _));
        var hot = new CompletionRequest([1], new SamplingOptions(5, Temperature: double.NaN), []);
        Assert.Throws<PeerSharpException>(() => generator.TrySubmit(hot, default, out _));
    }
}
