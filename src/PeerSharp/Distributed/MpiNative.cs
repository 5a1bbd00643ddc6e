using System.Runtime.InteropServices;

namespace PeerSharp.Distributed;

/// <summary>
/// The few Open MPI calls data- and expert-parallel training use, bound directly to libmpi.so.40 (Open MPI 4, Debian's
/// libopenmpi3). Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are the addresses of
/// exported globals (ompi_mpi_comm_world, …), resolved once with <see cref="NativeLibrary.GetExport"/>;
/// MPI_IN_PLACE is (void*)1. Counts are C ints: callers split larger messages (<see cref="MpiCommunicator"/>).
/// </summary>
static unsafe partial class MpiNative
{
    const string Library = "libmpi.so.40";

    /// <summary>MPI_IN_PLACE in Open MPI.</summary>
    public static readonly void* InPlace = (void*)1;

    /// <summary>MPI_SUCCESS.</summary>
    public const int Success = 0;

    /// <summary>MPI_MAX_ERROR_STRING in Open MPI.</summary>
    public const int MaxErrorString = 256;

    static nint _library;

    /// <summary>Loads libmpi.so.40 (once); a <see cref="PeerSharpException"/> when Open MPI is not installed.</summary>
    public static void Load()
    {
        if (_library != 0) return;
        if (!NativeLibrary.TryLoad(Library, out _library))
            throw new PeerSharpException($"this process was started by mpirun but {Library} (Open MPI 4) cannot be loaded; install it (Debian: apt-get install openmpi-bin) on every machine of the job");
    }

    /// <summary>The address of an exported global: an Open MPI predefined handle.</summary>
    public static nint Handle(string name) => NativeLibrary.GetExport(_library, name);

    [LibraryImport(Library, EntryPoint = "MPI_Init")]
    public static partial int Init(int* argc, byte*** argv);

    [LibraryImport(Library, EntryPoint = "MPI_Initialized")]
    public static partial int Initialized(int* flag);

    [LibraryImport(Library, EntryPoint = "MPI_Finalize")]
    public static partial int Finalize();

    [LibraryImport(Library, EntryPoint = "MPI_Comm_rank")]
    public static partial int CommRank(nint comm, int* rank);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_size")]
    public static partial int CommSize(nint comm, int* size);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_set_errhandler")]
    public static partial int CommSetErrhandler(nint comm, nint handler);

    [LibraryImport(Library, EntryPoint = "MPI_Allreduce")]
    public static partial int Allreduce(void* sendBuffer, void* receiveBuffer, int count, nint datatype, nint op, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Allgather")]
    public static partial int Allgather(void* sendBuffer, int sendCount, nint sendType, void* receiveBuffer, int receiveCount, nint receiveType, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Allgatherv")]
    public static partial int Allgatherv(void* sendBuffer, int sendCount, nint sendType, void* receiveBuffer, int* receiveCounts, int* displacements, nint receiveType, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Alltoallv")]
    public static partial int Alltoallv(void* sendBuffer, int* sendCounts, int* sendDisplacements, nint sendType,
                                        void* receiveBuffer, int* receiveCounts, int* receiveDisplacements, nint receiveType, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Bcast")]
    public static partial int Bcast(void* buffer, int count, nint datatype, int root, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Barrier")]
    public static partial int Barrier(nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Abort")]
    public static partial int Abort(nint comm, int errorCode);

    [LibraryImport(Library, EntryPoint = "MPI_Error_string")]
    public static partial int ErrorString(int errorCode, byte* text, int* length);
}
