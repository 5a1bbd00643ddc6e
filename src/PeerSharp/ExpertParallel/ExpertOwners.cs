using PeerSharp.Distributed;
namespace PeerSharp.ExpertParallel;

/// <summary>
/// Which rank holds which rows of an expert-parallel PEER layer's tables (DESIGN.md "Distributed training"): rank r
/// holds the experts with id mod P = r, expert id at its local row id / P, so a table of N rows keeps
/// ⌈(N − r) / P⌉ of them on rank r. Ids a·n + b of one popular first sub-key a spread over all ranks this way,
/// where contiguous ranges would put all n of them on one. Also counts the bytes its exchanges send.
/// </summary>
public sealed class ExpertOwners
{
    float[] _floats = [], _received = [];
    long[] _longs = [], _receivedLongs = [];

    /// <summary>The shards of a table of <paramref name="expertCount"/> rows over the ranks of <paramref name="communicator"/>.</summary>
    public ExpertOwners(ICommunicator communicator, long expertCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(expertCount);
        (Communicator, ExpertCount) = (communicator, expertCount);
    }

    /// <summary>The ranks the rows are spread over.</summary>
    public ICommunicator Communicator { get; }

    /// <summary>N, the rows of the whole table.</summary>
    public long ExpertCount { get; }

    /// <summary>Rows rank <paramref name="rank"/> holds: ids rank, rank + P, rank + 2P, … below N.</summary>
    public long RowCount(int rank) => (ExpertCount - rank + Communicator.Size - 1) / Communicator.Size;

    /// <summary>Rows this rank holds.</summary>
    public long LocalRowCount => RowCount(Communicator.Rank);

    /// <summary>Bytes this rank sent to other ranks (requests, partial outputs, their gradients) since the last <see cref="ResetTraffic"/>.</summary>
    public long BytesSent { get; internal set; }

    /// <summary>Starts counting <see cref="BytesSent"/> from zero.</summary>
    public void ResetTraffic() => BytesSent = 0;

    /// <summary>Reused send and receive buffers of the exchanges (grown, never shrunk; valid until the next call).</summary>
    internal float[] SendFloats(long length) => Grow(ref _floats, length);

    /// <inheritdoc cref="SendFloats"/>
    internal float[] ReceiveFloats(long length) => Grow(ref _received, length);

    /// <inheritdoc cref="SendFloats"/>
    internal long[] SendLongs(long length) => Grow(ref _longs, length);

    /// <inheritdoc cref="SendFloats"/>
    internal long[] ReceiveLongs(long length) => Grow(ref _receivedLongs, length);

    static T[] Grow<T>(ref T[] buffer, long length)
    {
        if (buffer.Length < length) buffer = new T[Math.Max(length, 2L * buffer.Length)];
        return buffer;
    }

    /// <summary>Bytes of a message of <paramref name="counts"/> elements of <paramref name="size"/> bytes per rank that leave this rank.</summary>
    internal void CountSent(ReadOnlySpan<int> counts, int size)
    {
        for (int r = 0; r < counts.Length; r++)
            if (r != Communicator.Rank) BytesSent += (long)counts[r] * size;
    }
}
