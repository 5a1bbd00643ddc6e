using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// The isoFLOP runs compared at equal wall-clock time, which the paper does not do: a FLOP of product-key
/// retrieval or of a gathered expert does not cost what a FLOP of a dense matrix product costs on this CPU.
/// Every run is a point of bpb against its training seconds; each method's Pareto front is the best bpb it
/// reaches within a given time, whatever the size or budget. The seconds are the idle-machine estimate of
/// <see cref="SweepTiming"/> where every run's configuration was timed, else the wall time the runs recorded.
/// </summary>
static class WallClockSection
{
    /// <summary>The section for experiment <paramref name="name"/>: its figure is NAME-wallclock.png, its timing command `peer sweep experiments/NAME.json --time`.</summary>
    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, IReadOnlyList<ResultPoint> optimal,
                             IReadOnlyDictionary<string, RunTiming> timings, string name)
    {
        markdown.Heading(3, "At equal wall-clock time");
        var untimed = points.Select(p => p.Run).Distinct().Where(run => !timings.ContainsKey(run)).Order(StringComparer.Ordinal).ToList();
        // Estimates and recorded times are never mixed: one run's load would decide against another's idle machine.
        Func<ResultPoint, double> seconds = untimed.Count == 0 ? p => p.Of(r => r.Steps * timings[p.Run].SecondsPerStep).Mean : p => p.Of(r => r.WallSeconds).Mean;
        var methods = points.Select(p => p.Method).Distinct().OrderBy(ResultPoint.MethodOrder).ThenBy(m => m, StringComparer.Ordinal).ToList();
        Figure(markdown, figures, points, methods, seconds, name);
        markdown.Table(
            ["time limit", "set by", .. methods],
            "rl" + new string('r', methods.Count),
            optimal.GroupBy(p => p.Budget).Select(atBudget =>
            {
                // The limit: the training time of the budget's fastest compute-optimal run.
                var fastest = atBudget.MinBy(seconds)!;
                var limit = seconds(fastest);
                return (IReadOnlyList<string>)[
                    $"{ReportFormat.Number(limit, "N0")} s", $"{fastest.Run} at {ReportFormat.Budget(fastest.Budget)} (fastest compute-optimal run)",
                    .. methods.Select(method => points.Where(p => p.Method == method && seconds(p) <= limit).MinBy(p => p.ValidationBitsPerByte) is { } best
                        ? $"{ReportFormat.Number(best.ValidationBitsPerByte, "F3")} ({best.Run} at {ReportFormat.Budget(best.Budget)})"
                        : ReportFormat.Unknown)];
            }));
        markdown.Paragraph("Each row takes as its time limit the training time of one budget's fastest compute-optimal run, and gives each method's " +
                           "lowest validation bpb among all its isoFLOP runs (any size, any budget) that trained for no longer; a dash: none did.");
        if (untimed.Count == 0)
        {
            var machines = timings.Values.Where(t => points.Any(p => p.Run == t.Run)).ToList();
            markdown.Paragraph("Seconds are the training time each run would take alone on the machine: its steps times the seconds per step of its " +
                               $"configuration, measured by `peer sweep experiments/{name}.json --time` ({machines[0].WarmupSteps} untimed, then {machines[0].TimedSteps} timed steps " +
                               $"per configuration, one at a time) on {string.Join("; ", machines.Select(t => $"{t.Cpu}, {t.Cores} cores").Distinct())}, " +
                               $"1-minute load average before each at most {ReportFormat.Number(machines.Max(t => t.LoadBefore), "F2")} (the timings run back to back on all cores, " +
                               "so a load up to the core count is their own: only a higher one means other work). Validation and checkpoints are excluded.");
        }
        else
            markdown.Paragraph("Seconds are training time as each run recorded it (validations and checkpoints excluded, summed over interruptions, " +
                               "mean over seeds); they depend on the machine and on its load while the run trained, so other work on the machine " +
                               $"makes them worth little. Not yet timed alone: {string.Join(", ", untimed)}; `peer sweep experiments/{name}.json --time` " +
                               "on an idle machine times each configuration and turns these into idle-machine estimates.");
    }

    static void Figure(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, IReadOnlyList<string> methods, Func<ResultPoint, double> seconds, string name)
    {
        var plot = new Plot();
        foreach (var method in methods)
        {
            var runs = points.Where(p => p.Method == method).OrderBy(seconds).ToList();
            var color = ReportFigures.MethodColor(method);
            var scatter = plot.Add.ScatterPoints(runs.Select(p => Math.Log10(seconds(p))).ToArray(), runs.Select(p => p.ValidationBitsPerByte).ToArray(), color);
            scatter.LegendText = method;
            scatter.MarkerSize = 7;
            // The front: runs better than every faster run of the method.
            var front = new List<ResultPoint>();
            foreach (var run in runs)
                if (front.Count == 0 || run.ValidationBitsPerByte < front[^1].ValidationBitsPerByte) front.Add(run);
            var line = plot.Add.ScatterLine(front.Select(p => Math.Log10(seconds(p))).ToArray(), front.Select(p => p.ValidationBitsPerByte).ToArray(), color);
            line.LineWidth = 2;
            line.ConnectStyle = ConnectStyle.StepHorizontal;
        }
        ReportFigures.LogAxis(plot.Axes.Bottom, points.Select(seconds), v => ReportFormat.Number(v, "0.##") + " s");
        plot.Title("isoFLOP runs by training time");
        plot.XLabel("training wall-clock seconds (log scale)");
        plot.YLabel("validation bits per byte");
        plot.ShowLegend(Alignment.UpperRight);
        figures.Add(markdown, plot, $"{name}-wallclock", "validation bits per byte against training seconds, with each method's Pareto front");
        markdown.Paragraph("A point per isoFLOP run (every size and budget); the line is each method's Pareto front, the lowest bpb it reaches in at most that time.");
    }
}
