using PeerSharp.Distributed;

namespace PeerSharp.Cli;

/// <summary>
/// `mpirun -np P peer train …` (docs/DISTRIBUTED.md): the ranks of a job started by Open MPI's mpirun, or one
/// process otherwise. MPI is initialised only under mpirun, so libmpi is never needed elsewhere.
/// </summary>
static class DistributedLaunch
{
    static MpiCommunicator? _mpi;

    /// <summary>
    /// The communicator of this process: MPI's world under mpirun (initialised on the first call), else one rank.
    /// Ranks on one machine share its cores: unless OMP_NUM_THREADS says otherwise, each takes cores / local ranks.
    /// </summary>
    public static ICommunicator Replicas()
    {
        if (!MpiCommunicator.LaunchedByMpirun) return SingleProcess.Instance;
        if (_mpi is null)
        {
            _mpi = MpiCommunicator.Initialize();
            if (Environment.GetEnvironmentVariable("OMP_NUM_THREADS") is null)
                TorchSharp.torch.set_num_threads(Math.Max(1, Environment.ProcessorCount / MpiCommunicator.LocalSize));
        }
        return _mpi;
    }

    /// <summary>Reports a failure of this rank; in a job of several ranks it then stops all of them (MPI_Abort), so none waits for this one.</summary>
    public static int Fail(string message)
    {
        if (_mpi is not { Size: > 1 } mpi)
        {
            Console.Error.WriteLine($"peer: {message}");
            return 1;
        }
        Console.Error.WriteLine($"peer: rank {mpi.Rank} of {mpi.Size}: {message}");
        mpi.Abort(1);
        return 1;
    }

    /// <summary>Finalises MPI after a command that used it ran on every rank.</summary>
    public static void Finish() => _mpi?.Dispose();
}
