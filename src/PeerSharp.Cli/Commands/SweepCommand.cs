using System.CommandLine;
using PeerSharp.Experiments;
using PeerSharp.Training;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer sweep SPEC.json`: runs a grid of training runs at fixed FLOP budgets (<see cref="Sweep"/>), resumably.</summary>
static class SweepCommand
{
    public static Command Create()
    {
        var spec = new Argument<FileInfo>("spec") { Description = "Sweep spec (experiments/*.json)" };
        var results = new Option<string?>("--results") { Description = "Results file to append to (default: SPEC's folder/NAME.results.jsonl)" };
        var runs = new Option<string>("--runs") { Description = "Folder of the runs' checkpoints and logs", DefaultValueFactory = _ => Path.Combine("runs", "sweeps") };
        var plan = new Option<bool>("--plan") { Description = "Only list the runs, their steps and FLOPs, and what is already done" };
        var command = new Command("sweep", "Train every run of a sweep spec to its FLOP budget; finished runs are skipped, an interrupted one resumes.") { spec, results, runs, plan };
        command.SetAction(parse =>
        {
            var specFile = parse.GetValue(spec)!;
            var sweep = SweepSpec.Load(specFile.FullName);
            var folder = specFile.DirectoryName!;
            var resultsPath = parse.GetValue(results) ?? Path.Combine(folder, $"{sweep.Name}.results.jsonl");
            if (parse.GetValue(plan)) return PrintPlan(sweep, resultsPath);

            using var cancellation = new CancellationTokenSource();
            using var signals = StopSignals.Cancel(cancellation);
            var finished = Sweep.Run(sweep, folder, resultsPath, parse.GetValue(runs)!, new LineObserver(), cancellation.Token);
            var total = Sweep.Plan(sweep).Count;
            AnsiConsole.MarkupLine(finished.Count == total
                ? $"[bold]Sweep {Markup.Escape(sweep.Name)} complete[/]: {total} runs in {Markup.Escape(resultsPath)}. Next: peer report {Markup.Escape(resultsPath)}"
                : $"Sweep {Markup.Escape(sweep.Name)} stopped with {finished.Count} of {total} runs done; run the same command to continue.");
            return finished.Count == total ? 0 : 130;
        });
        return command;
    }

    static int PrintPlan(SweepSpec sweep, string resultsPath)
    {
        var done = Sweep.ReadResults(resultsPath);
        var table = new Table().AddColumn("run").AddColumn("method").AddColumn(new TableColumn("budget").RightAligned())
            .AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("steps").RightAligned()).AddColumn("done");
        var items = Sweep.Plan(sweep);
        foreach (var item in items)
            table.AddRow(Markup.Escape(item.Id), Markup.Escape(item.Run.Method), $"{item.Budget:0.##e0}", item.Flops.Parameters.ToString("N0"),
                         item.Config.Train.Steps.ToString("N0"), done.ContainsKey(item.Id) ? "yes" : "");
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"{items.Count(i => done.ContainsKey(i.Id))} of {items.Count} done; {items.Where(i => !done.ContainsKey(i.Id)).Sum(i => i.TrainingFlops):0.##e0} training FLOPs to go.");
        return 0;
    }

    /// <summary>One line per run and a line every tenth of a run: readable in a log file and on a terminal alike.</summary>
    internal sealed class LineObserver : ISweepObserver
    {
        public void RunStarted(int index, int count, SweepItem item, long startStep, double? remainingSeconds) =>
            AnsiConsole.MarkupLine($"[bold][[{index + 1}/{count}]][/] {Markup.Escape(item.Id)}: {item.Flops.Parameters:N0} parameters, {item.Config.Train.Steps:N0} steps" +
                                   (startStep > 0 ? $", resuming at step {startStep}" : "") +
                                   (remainingSeconds is { } s ? $"; about {TimeSpan.FromSeconds(s):h\\:mm\\:ss} left in the sweep" : ""));

        public void StepCompleted(SweepItem item, StepReport step)
        {
            var tenth = Math.Max(1, step.TotalSteps / 10);
            if (step.Step % tenth == 0 || step.Step == step.TotalSteps)
                Console.WriteLine($"    step {step.Step,6}/{step.TotalSteps}  loss {step.Loss:F4}  {step.TokensPerSecond:N0} tok/s");
        }

        public void RunFinished(int index, int count, SweepItem item, SweepResult result, bool skipped)
        {
            if (skipped) return;
            AnsiConsole.MarkupLine($"    done: validation {result.Validation.BitsPerByte:F3} bits/byte" +
                                   (result.Test is { } t ? $", test {t.BitsPerByte:F3}" : "") +
                                   string.Concat(result.Validation.Layers.Select(l => $", block {l.Block} usage {l.Usage:P1} unevenness {l.Unevenness:F2}")) +
                                   $"; {result.WallSeconds:F0} s, {result.TokensPerSecond:N0} tok/s");
        }
    }
}
