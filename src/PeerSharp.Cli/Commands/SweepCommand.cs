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
        var time = new Option<bool>("--time")
        {
            Description = "Instead of training, time each configuration alone for a few steps (on an idle machine) and append to SPEC's folder/NAME.timings.jsonl; peer report then compares methods at equal idle-machine training time",
        };
        var timeAgain = new Option<bool>("--time-again") { Description = "With --time: measure every configuration again, even those already timed" };
        var only = new Option<string?>("--only") { Description = "Comma list of the spec's run names: train (or plan) only those, every seed and budget of each, and no confirmation seeds" };
        var command = new Command("sweep", "Train every run of a sweep spec to its FLOP budget; finished runs are skipped, an interrupted one resumes.") { spec, results, runs, plan, time, timeAgain, only };
        command.SetAction(parse =>
        {
            var specFile = parse.GetValue(spec)!;
            var sweep = SweepSpec.Load(specFile.FullName);
            if (parse.GetValue(only) is { } names) sweep = sweep.Only(names.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
            var folder = specFile.DirectoryName!;
            var resultsPath = parse.GetValue(results) ?? Path.Combine(folder, $"{sweep.Name}.results.jsonl");
            if (parse.GetValue(plan)) return PrintPlan(sweep, resultsPath);
            if (parse.GetValue(time)) return Time(sweep, folder, SweepTiming.PathBeside(resultsPath, sweep.Name), parse.GetValue(runs)!, parse.GetValue(timeAgain));

            using var cancellation = new CancellationTokenSource();
            using var signals = StopSignals.Cancel(cancellation);
            var finished = Sweep.Run(sweep, folder, resultsPath, parse.GetValue(runs)!, new LineObserver(), cancellation.Token);
            var total = Sweep.Plan(sweep).Count + Sweep.Confirmations(sweep, Sweep.ReadResults(resultsPath)).Count;
            AnsiConsole.MarkupLine(finished.Count == total
                ? $"[bold]Sweep {Markup.Escape(sweep.Name)} complete[/]: {total} runs in {Markup.Escape(resultsPath)}. Next: peer report {Markup.Escape(resultsPath)}"
                : $"Sweep {Markup.Escape(sweep.Name)} stopped with {finished.Count} of {total} runs done; run the same command to continue.");
            return finished.Count == total ? 0 : 130;
        });
        return command;
    }

    static int Time(SweepSpec sweep, string folder, string timingsPath, string runsFolder, bool again)
    {
        if (MachineInfo.RecentLoad() is > 0.5 and var load)
            AnsiConsole.MarkupLine($"[yellow]warning[/]: the 1-minute load average is {load:F2}; other work on the machine slows the timings (each line records the load)");
        using var cancellation = new CancellationTokenSource();
        using var signals = StopSignals.Cancel(cancellation);
        var timings = SweepTiming.Measure(sweep, folder, timingsPath, runsFolder, again,
            progress: (index, count, run) => AnsiConsole.Markup($"[[{index + 1}/{count}]] timing {Markup.Escape(run)}... "),
            onTimed: timing => AnsiConsole.MarkupLine($"{timing.SecondsPerStep * 1000:N0} ms per step (load {timing.LoadBefore:F2})"),
            cancellation: cancellation.Token);
        AnsiConsole.MarkupLine($"{timings.Count} configurations timed into {Markup.Escape(timingsPath)}.");
        return cancellation.IsCancellationRequested ? 130 : 0;
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
        var confirmations = Sweep.Confirmations(sweep, done);
        foreach (var item in confirmations)
            table.AddRow(Markup.Escape(item.Id) + " (confirmation)", Markup.Escape(item.Run.Method), $"{item.Budget:0.##e0}", item.Flops.Parameters.ToString("N0"),
                         item.Config.Train.Steps.ToString("N0"), done.ContainsKey(item.Id) ? "yes" : "");
        AnsiConsole.Write(table);
        var all = items.Concat(confirmations).ToList();
        AnsiConsole.MarkupLine($"{all.Count(i => done.ContainsKey(i.Id))} of {all.Count} done; {all.Where(i => !done.ContainsKey(i.Id)).Sum(i => i.TrainingFlops):0.##e0} training FLOPs to go." +
                               (sweep.ConfirmationSeeds.Length > 0 && confirmations.Count == 0
                                   ? $" After the grid: seeds {string.Join(", ", sweep.ConfirmationSeeds)} at each method's compute-optimal run per budget." : ""));
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

        public void Retraining(SweepItem item, string why) =>
            AnsiConsole.MarkupLine($"    training {Markup.Escape(item.Id)} again first: {Markup.Escape(why)}");

        public void RunFinished(int index, int count, SweepItem item, SweepResult result, bool skipped)
        {
            if (skipped) return;
            if (result.ReusedFrom is { } source)
            {
                AnsiConsole.MarkupLine($"[bold][[{index + 1}/{count}]][/] {Markup.Escape(item.Id)}: the same model, budget, seed and data as {Markup.Escape(source)}; its result was copied, not trained again");
                return;
            }
            AnsiConsole.MarkupLine($"    done: validation {result.Validation.BitsPerByte:F3} bits/byte" +
                                   (result.Test is { } t ? $", test {t.BitsPerByte:F3}" : "") +
                                   string.Concat(result.Validation.Layers.Select(l => $", block {l.Block} usage {l.Usage:P1} unevenness {l.Unevenness:F2}")) +
                                   $"; {result.WallSeconds:F0} s, {result.TokensPerSecond:N0} tok/s");
        }
    }
}
