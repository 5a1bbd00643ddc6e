namespace PeerSharp.Generation;

/// <summary>What a <see cref="BatchGenerator"/> has done since it started, for /metrics. Safe to read from any thread.</summary>
public sealed class GenerationStatistics
{
    long _requests, _rejected, _promptTokens, _generatedTokens, _steps;
    readonly long[] _finished = new long[Enum.GetValues<FinishReason>().Length];

    /// <summary>Requests accepted.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Requests refused because the batch and the queue were full.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Prompt tokens run.</summary>
    public long PromptTokens => Interlocked.Read(ref _promptTokens);

    /// <summary>Tokens generated.</summary>
    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);

    /// <summary>Batched decoding steps run.</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>Completions ended, by reason.</summary>
    public long Finished(FinishReason reason) => Interlocked.Read(ref _finished[(int)reason]);

    /// <summary>Seconds from a request's arrival to its first token.</summary>
    public Histogram TimeToFirstToken { get; } = new(Histogram.LatencySeconds);

    /// <summary>Seconds between two tokens of one completion.</summary>
    public Histogram TokenLatency { get; } = new(Histogram.LatencySeconds);

    /// <summary>Sequences decoded together per step.</summary>
    public Histogram BatchSize { get; } = new([1, 2, 4, 8, 16, 32, 64, 128, 256]);

    internal void Accepted(int promptTokens)
    {
        Interlocked.Increment(ref _requests);
        Interlocked.Add(ref _promptTokens, promptTokens);
    }

    internal void Refused() => Interlocked.Increment(ref _rejected);

    internal void Generated() => Interlocked.Increment(ref _generatedTokens);

    internal void Step(int batch)
    {
        Interlocked.Increment(ref _steps);
        BatchSize.Observe(batch);
    }

    internal void Ended(FinishReason reason) => Interlocked.Increment(ref _finished[(int)reason]);
}
