namespace PeerSharp.Distributed;

/// <summary>
/// The collective operations data-parallel training needs, over the P processes ("ranks") of one job
/// (DESIGN.md "Distributed training"). Every rank must call the same collectives in the same order with
/// matching sizes; a collective returns on a rank once that rank's part is done. <see cref="SingleProcess"/>
/// is the one-rank communicator (every collective is the identity), <see cref="MpiCommunicator"/> the one of a
/// job started by mpirun.
/// </summary>
public interface ICommunicator
{
    /// <summary>This process's rank, 0 … Size − 1.</summary>
    int Rank { get; }

    /// <summary>P, the number of ranks.</summary>
    int Size { get; }

    /// <summary>Replaces <paramref name="values"/> on every rank by their element-wise sum over the ranks.</summary>
    void AllReduceSum(Span<float> values);

    /// <inheritdoc cref="AllReduceSum(Span{float})"/>
    void AllReduceSum(Span<double> values);

    /// <inheritdoc cref="AllReduceSum(Span{float})"/>
    void AllReduceSum(Span<long> values);

    /// <summary>
    /// Concatenates every rank's <paramref name="local"/> in rank order into <paramref name="result"/>, whose
    /// length is the sum of <paramref name="counts"/> (counts[r] = the length of rank r's part, known to all).
    /// </summary>
    void AllGather(ReadOnlySpan<float> local, ReadOnlySpan<long> counts, Span<float> result);

    /// <inheritdoc cref="AllGather(ReadOnlySpan{float}, ReadOnlySpan{long}, Span{float})"/>
    void AllGather(ReadOnlySpan<long> local, ReadOnlySpan<long> counts, Span<long> result);

    /// <summary>
    /// Personalised exchange (MPI_Alltoallv): this rank sends bytes [Σ_{q&lt;r} sendCounts[q], +sendCounts[r]) of
    /// <paramref name="send"/> to rank r and receives rank r's part for it into <paramref name="receive"/>, the
    /// parts in rank order (receiveCounts[r] bytes from rank r, which must equal what rank r sends here). Counts are
    /// C ints; each side's total must stay below 2 GB (callers split larger exchanges).
    /// </summary>
    void AllToAll(ReadOnlySpan<byte> send, ReadOnlySpan<int> sendCounts, Span<byte> receive, ReadOnlySpan<int> receiveCounts);

    /// <summary>Copies rank <paramref name="root"/>'s <paramref name="data"/> into every other rank's.</summary>
    void Broadcast(Span<byte> data, int root = 0);

    /// <summary>Returns on every rank once all ranks have called it.</summary>
    void Barrier();

    /// <summary>Ends every rank of the job now with <paramref name="exitCode"/> (a failed rank must not leave the others waiting).</summary>
    void Abort(int exitCode);
}
