using System.CommandLine;
using PeerSharp;
using PeerSharp.Cli.Commands;
using PeerSharp.Kernels;

NativeRuntime.Configure();   // before the first tensor: OpenMP and malloc settings for CPU training
var root = new RootCommand("PeerSharp: PEER (Mixture of A Million Experts) language models on TorchSharp.");
Command[] commands = [BenchCommand.Create()];
foreach (var command in commands) root.Subcommands.Add(command);
try
{
    return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (PeerSharpException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
