using System.CommandLine;
using PeerSharp.Experiments;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer report`: the options of <see cref="ExperimentReport"/>, which does the work.</summary>
static class ReportCommand
{
    public static Command Create()
    {
        var results = new Argument<string[]>("results") { Description = "Results files of sweeps (experiments/NAME.results.jsonl)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "Where to write the report", DefaultValueFactory = _ => Path.Combine("docs", "EXPERIMENTS.md") };
        var figures = new Option<string>("--figures") { Description = "Folder for the report's PNG figures", DefaultValueFactory = _ => Path.Combine("docs", "figures") };
        var command = new Command("report", "Write docs/EXPERIMENTS.md and its figures from sweep results: isoFLOP curves, Table 1, wall-clock comparison, the N and h·k ablations, query BatchNorm and expert usage")
        {
            results, output, figures,
        };
        command.SetAction(parse =>
        {
            foreach (var file in ExperimentReport.Write(parse.GetValue(results)!, parse.GetValue(output)!, parse.GetValue(figures)!))
                Console.WriteLine($"wrote {file}");
            return 0;
        });
        return command;
    }
}
