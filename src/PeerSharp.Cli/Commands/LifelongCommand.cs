using System.CommandLine;
using PeerSharp.Experiments;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer lifelong SPEC.json`: the lifelong-learning experiment (<see cref="Lifelong"/>), resumably, then its report.</summary>
static class LifelongCommand
{
    public static Command Create()
    {
        var spec = new Argument<FileInfo>("spec") { Description = "Lifelong spec (experiments/lifelong.json)" };
        var results = new Option<string?>("--results") { Description = "Results file to append to (default: SPEC's folder/NAME.results.jsonl)" };
        var runs = new Option<string>("--runs") { Description = "Folder of the runs' checkpoints and logs", DefaultValueFactory = _ => Path.Combine("runs", "lifelong") };
        var report = new Option<string>("--report") { Description = "Markdown report to write (its figures go beside it, in FOLDER/lifelong/)", DefaultValueFactory = _ => Path.Combine("docs", "lifelong", "RESULTS.md") };
        var command = new Command("lifelong", "Phase 1 on domain A, then each arm (grown or not, parts frozen, replaying or pulled) on domain B, and the arms that continue an arm on domain C; scores forgetting and learning.") { spec, results, runs, report };
        command.SetAction(parse =>
        {
            var specFile = parse.GetValue(spec)!;
            var experiment = LifelongSpec.Load(specFile.FullName);
            var resultsPath = parse.GetValue(results) ?? Path.Combine(specFile.DirectoryName!, $"{experiment.Name}.results.jsonl");
            using var cancellation = new CancellationTokenSource();
            using var signals = StopSignals.Cancel(cancellation);
            var total = Lifelong.Plan(experiment, specFile.DirectoryName!, parse.GetValue(runs)!).Count;
            var finished = Lifelong.Run(experiment, specFile.DirectoryName!, resultsPath, parse.GetValue(runs)!, new SweepCommand.LineObserver(), cancellation.Token);
            if (finished.Count < total)
            {
                AnsiConsole.MarkupLine($"Lifelong experiment {Markup.Escape(experiment.Name)} stopped with {finished.Count} of {total} runs done; run the same command to continue.");
                return 130;
            }
            var markdownPath = parse.GetValue(report)!;
            var outcomes = LifelongReport.Write(resultsPath, markdownPath, Path.GetDirectoryName(Path.GetFullPath(markdownPath))!);
            var table = new Table().AddColumn("arm").AddColumn(new TableColumn("forgetting (A, bits/byte)").RightAligned()).AddColumn(new TableColumn("learning (B, bits/byte)").RightAligned());
            foreach (var o in outcomes) table.AddRow(Markup.Escape(o.Result.Id), o.Forgetting.ToString("+0.000;-0.000"), o.Learning.ToString("+0.000;-0.000"));
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"[bold]Lifelong experiment {Markup.Escape(experiment.Name)} complete[/]: {total} runs in {Markup.Escape(resultsPath)}; report {Markup.Escape(markdownPath)}");
            return 0;
        });
        return command;
    }
}
