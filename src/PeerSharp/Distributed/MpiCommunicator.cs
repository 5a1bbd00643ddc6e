using System.Text;

namespace PeerSharp.Distributed;

/// <summary>
/// The communicator of a job started by Open MPI's mpirun (MPI_COMM_WORLD), over our own bindings
/// (<see cref="MpiNative"/>). libmpi is loaded only here, so a program that never runs under mpirun never needs
/// it. Errors of a call are exceptions (the communicator's error handler is MPI_ERRORS_RETURN); messages over
/// <see cref="MaxMessageBytes"/> travel in several calls, since MPI counts are C ints.
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator, IDisposable
{
    /// <summary>The largest message one MPI call carries; larger ones are split.</summary>
    public const int MaxMessageBytes = 1 << 30;

    static MpiCommunicator? _instance;

    readonly nint _world, _float, _double, _int64, _byte, _sum;
    bool _finalized;

    MpiCommunicator()
    {
        MpiNative.Load();
        (_world, _float, _double) = (MpiNative.Handle("ompi_mpi_comm_world"), MpiNative.Handle("ompi_mpi_float"), MpiNative.Handle("ompi_mpi_double"));
        (_int64, _byte, _sum) = (MpiNative.Handle("ompi_mpi_int64_t"), MpiNative.Handle("ompi_mpi_byte"), MpiNative.Handle("ompi_mpi_op_sum"));
        int initialized;
        Check(MpiNative.Initialized(&initialized), "MPI_Initialized");
        if (initialized == 0) Check(MpiNative.Init(null, null), "MPI_Init");
        Check(MpiNative.CommSetErrhandler(_world, MpiNative.Handle("ompi_mpi_errors_return")), "MPI_Comm_set_errhandler");
        int rank, size;
        Check(MpiNative.CommRank(_world, &rank), "MPI_Comm_rank");
        Check(MpiNative.CommSize(_world, &size), "MPI_Comm_size");
        (Rank, Size) = (rank, size);
    }

    /// <summary>Whether this process was started by Open MPI's mpirun (it sets OMPI_COMM_WORLD_SIZE for every rank).</summary>
    public static bool LaunchedByMpirun => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null;

    /// <summary>Ranks of this job on this machine (OMPI_COMM_WORLD_LOCAL_SIZE), 1 outside mpirun.</summary>
    public static int LocalSize => int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out var n) && n > 0 ? n : 1;

    /// <summary>Initialises MPI (once per process: MPI cannot be initialised again after it finished) and returns the world communicator.</summary>
    public static MpiCommunicator Initialize() => _instance ??= new MpiCommunicator();

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <inheritdoc />
    public void AllReduceSum(Span<float> values) => AllReduce(values, _float);

    /// <inheritdoc />
    public void AllReduceSum(Span<double> values) => AllReduce(values, _double);

    /// <inheritdoc />
    public void AllReduceSum(Span<long> values) => AllReduce(values, _int64);

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<float> local, ReadOnlySpan<long> counts, Span<float> result) => AllGather(local, counts, result, _float);

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<long> local, ReadOnlySpan<long> counts, Span<long> result) => AllGather(local, counts, result, _int64);

    /// <inheritdoc />
    public void AllToAll(ReadOnlySpan<byte> send, ReadOnlySpan<int> sendCounts, Span<byte> receive, ReadOnlySpan<int> receiveCounts)
    {
        if (sendCounts.Length != Size || receiveCounts.Length != Size)
            throw new ArgumentException($"all-to-all: {sendCounts.Length} send and {receiveCounts.Length} receive counts for {Size} ranks");
        var counts = stackalloc int[4 * Size];   // send counts, send displacements, receive counts, receive displacements
        long sent = 0, received = 0;
        for (int r = 0; r < Size; r++)
        {
            (counts[r], counts[Size + r]) = (sendCounts[r], checked((int)sent));
            (counts[2 * Size + r], counts[3 * Size + r]) = (receiveCounts[r], checked((int)received));
            (sent, received) = (sent + sendCounts[r], received + receiveCounts[r]);
        }
        if (sent != send.Length || received != receive.Length)
            throw new ArgumentException($"all-to-all: rank {Rank} sends {send.Length} bytes and receives {receive.Length}, but the counts say {sent} and {received}");
        byte empty = 0;   // an empty span may be a null pointer; MPI wants a valid buffer
        fixed (byte* s = send)
        fixed (byte* r = receive)
            Check(MpiNative.Alltoallv(s is null ? &empty : s, counts, counts + Size, _byte, r is null ? &empty : r, counts + 2 * Size, counts + 3 * Size, _byte, _world), "MPI_Alltoallv");
    }

    /// <inheritdoc />
    public void Broadcast(Span<byte> data, int root = 0)
    {
        fixed (byte* p = data)
            for (long offset = 0; offset < data.Length; offset += MaxMessageBytes)
                Check(MpiNative.Bcast(p + offset, (int)Math.Min(MaxMessageBytes, data.Length - offset), _byte, root, _world), "MPI_Bcast");
    }

    /// <inheritdoc />
    public void Barrier() => Check(MpiNative.Barrier(_world), "MPI_Barrier");

    /// <inheritdoc />
    public void Abort(int exitCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        MpiNative.Abort(_world, exitCode);
        Environment.Exit(exitCode);   // MPI_Abort does not return; this is only in case it did
    }

    void AllReduce<T>(Span<T> values, nint datatype) where T : unmanaged
    {
        int chunk = MaxMessageBytes / sizeof(T);
        fixed (T* p = values)
            for (long offset = 0; offset < values.Length; offset += chunk)
                Check(MpiNative.Allreduce(MpiNative.InPlace, p + offset, (int)Math.Min(chunk, values.Length - offset), datatype, _sum, _world), "MPI_Allreduce");
    }

    /// <summary>
    /// One MPI_Allgatherv when the whole result fits in one message; otherwise each rank's part is broadcast
    /// from its rank in pieces (displacements are C ints too, so a large result cannot be one call).
    /// </summary>
    void AllGather<T>(ReadOnlySpan<T> local, ReadOnlySpan<long> counts, Span<T> result, nint datatype) where T : unmanaged
    {
        if (counts.Length != Size || counts[Rank] != local.Length)
            throw new ArgumentException($"all-gather: rank {Rank} sends {local.Length} elements but the counts say {(counts.Length == Size ? counts[Rank] : -1)}");
        long total = 0;
        foreach (var count in counts) total += count;
        if (result.Length != total) throw new ArgumentException($"all-gather: the result holds {result.Length} elements, expected {total}");
        fixed (T* send = local)
        fixed (T* receive = result)
        {
            if (total * sizeof(T) <= MaxMessageBytes)
            {
                var receiveCounts = stackalloc int[Size];
                var displacements = stackalloc int[Size];
                for (int r = 0, offset = 0; r < Size; offset += (int)counts[r], r++)
                    (receiveCounts[r], displacements[r]) = ((int)counts[r], offset);
                // A zero-length span may be a null pointer, which MPI reads as MPI_IN_PLACE's neighbour; pass the result instead.
                Check(MpiNative.Allgatherv(local.Length == 0 ? receive : send, local.Length, datatype, receive, receiveCounts, displacements, datatype, _world), "MPI_Allgatherv");
                return;
            }
            int chunk = MaxMessageBytes / sizeof(T);
            long start = 0;
            for (int r = 0; r < Size; start += counts[r], r++)
            {
                if (r == Rank) local.CopyTo(result.Slice((int)start));
                for (long offset = 0; offset < counts[r]; offset += chunk)
                    Check(MpiNative.Bcast(receive + start + offset, (int)Math.Min(chunk, counts[r] - offset), datatype, r, _world), "MPI_Bcast");
            }
        }
    }

    void Check(int code, string call)
    {
        if (code == MpiNative.Success) return;
        var text = stackalloc byte[MpiNative.MaxErrorString];
        int length = 0;
        var message = MpiNative.ErrorString(code, text, &length) == MpiNative.Success ? Encoding.ASCII.GetString(text, length) : $"error {code}";
        throw new MpiException($"{call} failed on rank {Rank}: {message}");
    }

    /// <summary>Finalises MPI (after this no rank may call MPI again in this process).</summary>
    public void Dispose()
    {
        if (_finalized) return;
        _finalized = true;
        MpiNative.Finalize();
    }
}

/// <summary>An MPI call returned an error: the job cannot go on (the other ranks are stopped with MPI_Abort).</summary>
public sealed class MpiException(string message) : Exception(message);
