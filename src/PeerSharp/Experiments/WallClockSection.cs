using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// The isoFLOP runs compared at equal wall-clock time, which the paper does not do: a FLOP of product-key
/// retrieval or of a gathered expert does not cost what a FLOP of a dense matrix product costs on this CPU.
/// Every run is a point of bpb against its training seconds; each method's Pareto front is the best bpb it
/// reaches within a given time, whatever the size or budget.
/// </summary>
static class WallClockSection
{
    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, IReadOnlyList<ResultPoint> optimal)
    {
        markdown.Heading(3, "At equal wall-clock time");
        var methods = points.Select(p => p.Method).Distinct().OrderBy(ResultPoint.MethodOrder).ThenBy(m => m, StringComparer.Ordinal).ToList();
        Figure(markdown, figures, points, methods);
        markdown.Table(
            ["time limit", "set by", .. methods],
            "rl" + new string('r', methods.Count),
            optimal.GroupBy(p => p.Budget).Select(atBudget =>
            {
                // The limit: the training time of the budget's fastest compute-optimal run.
                var fastest = atBudget.MinBy(Seconds)!;
                var limit = Seconds(fastest);
                return (IReadOnlyList<string>)[
                    $"{ReportFormat.Number(limit, "N0")} s", $"{fastest.Run} at {ReportFormat.Budget(fastest.Budget)} (fastest compute-optimal run)",
                    .. methods.Select(method => points.Where(p => p.Method == method && Seconds(p) <= limit).MinBy(p => p.ValidationBitsPerByte) is { } best
                        ? $"{ReportFormat.Number(best.ValidationBitsPerByte, "F3")} ({best.Run} at {ReportFormat.Budget(best.Budget)})"
                        : ReportFormat.Unknown)];
            }));
        markdown.Paragraph("Each row takes as its time limit the training time of one budget's fastest compute-optimal run, and gives each method's " +
                           "lowest validation bpb among all its isoFLOP runs (any size, any budget) that trained for no longer; a dash: none did. " +
                           "Seconds are training time as each run recorded it (validations and checkpoints excluded, summed over interruptions, " +
                           "mean over seeds); they depend on the machine and on its load while the run trained.");
    }

    static double Seconds(ResultPoint point) => point.Of(r => r.WallSeconds).Mean;

    static void Figure(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, IReadOnlyList<string> methods)
    {
        var plot = new Plot();
        foreach (var method in methods)
        {
            var runs = points.Where(p => p.Method == method).OrderBy(Seconds).ToList();
            var color = ReportFigures.MethodColor(method);
            var scatter = plot.Add.ScatterPoints(runs.Select(p => Math.Log10(Seconds(p))).ToArray(), runs.Select(p => p.ValidationBitsPerByte).ToArray(), color);
            scatter.LegendText = method;
            scatter.MarkerSize = 7;
            // The front: runs better than every faster run of the method.
            var front = new List<ResultPoint>();
            foreach (var run in runs)
                if (front.Count == 0 || run.ValidationBitsPerByte < front[^1].ValidationBitsPerByte) front.Add(run);
            var line = plot.Add.ScatterLine(front.Select(p => Math.Log10(Seconds(p))).ToArray(), front.Select(p => p.ValidationBitsPerByte).ToArray(), color);
            line.LineWidth = 2;
            line.ConnectStyle = ConnectStyle.StepHorizontal;
        }
        ReportFigures.LogAxis(plot.Axes.Bottom, points.Select(Seconds), v => ReportFormat.Number(v, "0.##") + " s");
        plot.Title("isoFLOP runs by training time");
        plot.XLabel("training wall-clock seconds (log scale)");
        plot.YLabel("validation bits per byte");
        plot.ShowLegend(Alignment.UpperRight);
        figures.Add(markdown, plot, "wallclock", "validation bits per byte against training seconds, with each method's Pareto front");
        markdown.Paragraph("A point per isoFLOP run (every size and budget); the line is each method's Pareto front, the lowest bpb it reaches in at most that time.");
    }
}
