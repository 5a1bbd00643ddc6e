namespace PeerSharp.Distributed;

/// <summary>The communicator of a job of one rank: every collective leaves the data as it is.</summary>
public sealed class SingleProcess : ICommunicator
{
    /// <summary>The one instance.</summary>
    public static SingleProcess Instance { get; } = new();

    SingleProcess() { }

    /// <inheritdoc />
    public int Rank => 0;

    /// <inheritdoc />
    public int Size => 1;

    /// <inheritdoc />
    public void AllReduceSum(Span<float> values) { }

    /// <inheritdoc />
    public void AllReduceSum(Span<double> values) { }

    /// <inheritdoc />
    public void AllReduceSum(Span<long> values) { }

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<float> local, ReadOnlySpan<long> counts, Span<float> result) => local.CopyTo(result);

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<long> local, ReadOnlySpan<long> counts, Span<long> result) => local.CopyTo(result);

    /// <inheritdoc />
    public void AllToAll(ReadOnlySpan<byte> send, ReadOnlySpan<int> sendCounts, Span<byte> receive, ReadOnlySpan<int> receiveCounts) => send.CopyTo(receive);

    /// <inheritdoc />
    public void Broadcast(Span<byte> data, int root = 0) { }

    /// <inheritdoc />
    public void Barrier() { }

    /// <inheritdoc />
    public void Abort(int exitCode) => Environment.Exit(exitCode);
}
