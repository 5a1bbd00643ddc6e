using System.CommandLine;
using PeerSharp;
using PeerSharp.Cli.Commands;
using PeerSharp.Cli;

NativeRuntime.Configure();   // before the first tensor: OpenMP and malloc settings for CPU training

// The `peer` command: a thin shell over the PeerSharp library. Each sub-command lives in Commands/.
var root = new RootCommand("PeerSharp: PEER (Mixture of A Million Experts) language models on the CPU.")
{
    TrainCommand.Create(),
    EvalCommand.Create(),
    GenerateCommand.Create(),
    ServeCommand.Create(),
    InfoCommand.Create(),
    FlopsCommand.Create(),
    BenchCommand.Create(),
    SweepCommand.Create(),
    GrowCommand.Create(),
    InitCommand.Create(),
    LifelongCommand.Create(),
    ReportCommand.Create(),
};

// Redirected output (a log file, CI, mpirun forwarding a rank's output) is read by people and tools line by line: never wrap it at 80 columns.
if (Console.IsOutputRedirected || PeerSharp.Distributed.MpiCommunicator.LaunchedByMpirun) Spectre.Console.AnsiConsole.Profile.Width = 240;

// `peer` alone shows the usage; a command line that does not parse is one line, like every other user error.
var parse = root.Parse(args.Length == 0 ? ["--help"] : args);
if (parse.Errors.Count > 0 && !parse.Tokens.Any(t => t.Value is "--help" or "-h" or "-?"))
{
    Console.Error.WriteLine($"peer: {UserErrors.Describe(parse)}");
    return 1;
}

try
{
    var exitCode = parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    DistributedLaunch.Finish();
    return exitCode;
}
catch (PeerSharpException e)
{
    // A user error: one line, no stack trace (in a job of several ranks it stops them all).
    return DistributedLaunch.Fail(e.Message);
}
catch (Exception e) when (UserErrors.Describe(e) is { } message)
{
    // Out of memory or disk: the machine's limit, not a bug.
    return DistributedLaunch.Fail(message);
}
catch (PeerSharp.Distributed.MpiException e)
{
    // The job's communication failed (a rank or a machine is gone): stop every rank, not wait for it.
    return DistributedLaunch.Fail(e.Message);
}
