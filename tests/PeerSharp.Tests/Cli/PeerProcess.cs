using System.Diagnostics;
using System.Runtime.InteropServices;

namespace PeerSharp.Tests.Cli;

/// <summary>Runs the real `peer` program (copied beside the tests) in a child process.</summary>
static class PeerProcess
{
    public sealed record Result(int ExitCode, string Output, string Error);

    public static Result Run(string workingDirectory, params string[] args) => Run(workingDirectory, Variables.None, args);

    /// <summary>Runs `peer` with the variables of <paramref name="environment"/> set (PEERSHARP_CACHE, say).</summary>
    public static Result Run(string workingDirectory, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        using var running = Start(workingDirectory, environment, args);
        return running.WaitForExit();
    }

    /// <summary>Starts `peer` and returns at once, for tests that signal it or race a second one against it.</summary>
    public static Running Start(string workingDirectory, params string[] args) => Start(workingDirectory, Variables.None, args);

    /// <inheritdoc cref="Start(string, string[])"/>
    public static Running Start(string workingDirectory, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment) start.Environment[name] = value;
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "peer.dll"));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        return new Running(Process.Start(start)!, args);
    }

    /// <summary>A `peer` process still running; disposing it kills it if it has not ended.</summary>
    public sealed class Running : IDisposable
    {
        readonly Process _process;
        readonly string[] _args;
        readonly Task<string> _output, _error;

        internal Running(Process process, string[] args)
        {
            (_process, _args) = (process, args);
            _output = process.StandardOutput.ReadToEndAsync();
            _error = process.StandardError.ReadToEndAsync();
        }

        /// <summary>The process id (the `dotnet` host runs peer in its own process).</summary>
        public int Id => _process.Id;

        public bool HasExited => _process.HasExited;

        /// <summary>Sends a POSIX signal (SIGTERM, SIGHUP…); Process.Kill could only send SIGKILL.</summary>
        public void Signal(int signal)
        {
            if (Kill(_process.Id, signal) != 0) throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }

        public Result WaitForExit()
        {
            if (!_process.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit();
                // What it printed until then tells where it stopped moving (a rare hang after a signal was seen so far).
                static string Tail(string text) => text.Length <= 2000 ? text : "…" + text[^2000..];
                throw new TimeoutException($"peer {string.Join(' ', _args)} did not finish in 2 minutes; its output until then:\n{Tail(_output.Result)}\n{Tail(_error.Result)}");
            }
            return new Result(_process.ExitCode, _output.Result, _error.Result);
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }

    /// <summary>Environments of a child process.</summary>
    public static class Variables
    {
        /// <summary>The test process's own, unchanged.</summary>
        public static readonly IReadOnlyDictionary<string, string> None = new Dictionary<string, string>();

        /// <summary>Token caches in <paramref name="folder"/>, not the user's.</summary>
        public static IReadOnlyDictionary<string, string> Cache(string folder) => new Dictionary<string, string> { ["PEERSHARP_CACHE"] = folder };
    }

    public const int SigHup = 1;
    public const int SigTerm = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int Kill(int pid, int signal);

    /// <summary>
    /// Runs `peer` and asserts that it fails as every user error must: one line on stderr, "peer: " and
    /// <paramref name="expectedFragment"/> in it, a non-zero exit code, no stack trace and no temporary file left in
    /// <paramref name="workingDirectory"/>.
    /// </summary>
    public static Result AssertFailsWith(string workingDirectory, string expectedFragment, params string[] args) =>
        AssertFailsWith(workingDirectory, Variables.None, expectedFragment, args);

    /// <inheritdoc cref="AssertFailsWith(string, string, string[])"/>
    public static Result AssertFailsWith(string workingDirectory, IReadOnlyDictionary<string, string> environment, string expectedFragment, params string[] args)
    {
        var result = Run(workingDirectory, environment, args);
        AssertFailed(result, workingDirectory, expectedFragment);
        return result;
    }

    /// <summary>Asserts that a `peer` that ran failed as every user error must (<see cref="AssertFailsWith(string, string, string[])"/>).</summary>
    public static void AssertFailed(Result result, string workingDirectory, string expectedFragment)
    {
        Assert.NotEqual(0, result.ExitCode);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{result.Error}");
        Assert.StartsWith("peer: ", lines[0]);
        Assert.Contains(expectedFragment, lines[0]);
        Assert.DoesNotContain("   at ", result.Error + result.Output);
        Assert.Empty(Directory.GetFiles(workingDirectory, "*.tmp", SearchOption.AllDirectories));
    }
}
