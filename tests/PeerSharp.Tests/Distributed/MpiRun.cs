using System.Diagnostics;

namespace PeerSharp.Tests.Distributed;

/// <summary>
/// Runs the real `peer` program under Open MPI's mpirun in a child process (MPI can be initialised only once per
/// process, so never in the test host). As root, mpirun needs --allow-run-as-root; TERM=dumb keeps terminal
/// escapes out of the ranks' output; one thread per rank, as two ranks share this machine's cores.
/// </summary>
static class MpiRun
{
    /// <summary>The mpirun on the PATH, or null.</summary>
    public static string? Mpirun { get; } = (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(folder => Path.Combine(folder, "mpirun"))
        .FirstOrDefault(File.Exists);

    public sealed record Result(int ExitCode, string Output, string Error);

    /// <summary>Starts `mpirun -np <paramref name="ranks"/> peer ARGS` and returns at once.</summary>
    public static Process Start(string workingDirectory, int ranks, params string[] args)
    {
        var start = new ProcessStartInfo(Mpirun ?? throw new InvalidOperationException("mpirun is not installed"))
        {
            WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var arg in new[] { "--allow-run-as-root", "-np", ranks.ToString(), "dotnet", Path.Combine(AppContext.BaseDirectory, "peer.dll") }.Concat(args))
            start.ArgumentList.Add(arg);
        start.Environment["TERM"] = "dumb";
        start.Environment["OMP_NUM_THREADS"] = "1";
        return Process.Start(start)!;
    }

    /// <summary>Runs `mpirun -np <paramref name="ranks"/> peer ARGS` to its end (at most <paramref name="minutes"/>).</summary>
    public static Result Run(string workingDirectory, int ranks, params string[] args) => WaitForExit(Start(workingDirectory, ranks, args), args);

    public static Result WaitForExit(Process process, string[] args, int minutes = 3)
    {
        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(minutes)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"mpirun peer {string.Join(' ', args)} did not finish in {minutes} minutes");
            }
            return new Result(process.ExitCode, output.Result, error.Result);
        }
    }

    /// <summary>The process of MPI rank <paramref name="rank"/> among the descendants of <paramref name="mpirun"/> (read from /proc).</summary>
    public static int? RankProcess(int mpirun, int rank)
    {
        var pending = new Queue<int>([mpirun]);
        while (pending.Count > 0)
        {
            var pid = pending.Dequeue();
            foreach (var child in Children(pid))
            {
                if (EnvironmentOf(child).Contains($"OMPI_COMM_WORLD_RANK={rank}")) return child;
                pending.Enqueue(child);
            }
        }
        return null;
    }

    static IEnumerable<int> Children(int pid)
    {
        var tasks = $"/proc/{pid}/task";
        if (!Directory.Exists(tasks)) yield break;
        foreach (var task in Directory.GetDirectories(tasks))
        {
            string text;
            try { text = File.ReadAllText(Path.Combine(task, "children")); }
            catch (IOException) { continue; }
            foreach (var child in text.Split(' ', StringSplitOptions.RemoveEmptyEntries)) yield return int.Parse(child);
        }
    }

    static string[] EnvironmentOf(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/environ").Split('\0'); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }
}

/// <summary>A fact that needs Open MPI's mpirun: skipped, saying why and how to get it, where it is not installed.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    /// <summary>Skips the test without mpirun.</summary>
    public MpiFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "data-parallel training is tested with Open MPI on Linux only";
        else if (MpiRun.Mpirun is null) Skip = "Open MPI's mpirun is not installed, so data-parallel training was not tested; `apt-get install openmpi-bin libopenmpi-dev` (as .ci/run does) enables these tests";
    }
}
