using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// How PEER's expert usage grows with training, from each run's validations (paper Section 3.3 measures it at
/// the end only): the runs that vary N, the query-BatchNorm pairs and the compute-optimal isoFLOP PEER runs,
/// first seed of each.
/// </summary>
static class UsageSection
{
    sealed record Line(string Experiment, ResultPoint Point);

    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> isoFlop, IReadOnlyList<ResultPoint> experts, IReadOnlyList<ResultPoint> batchNorm)
    {
        markdown.Heading(2, "13. Expert usage over training");
        List<Line> lines = [
            .. experts.Select(p => new Line(ExperimentReport.Experts, p)),
            .. batchNorm.Select(p => new Line(ExperimentReport.BatchNorm, p)),
            .. IsoFlopSection.ComputeOptimal(isoFlop).Where(p => p.Method == "peer").Select(p => new Line(ExperimentReport.IsoFlop, p)),
        ];
        lines = [.. lines.Where(l => Curve(l.Point).Count > 0)];
        if (lines.Count == 0)
        {
            markdown.Paragraph("Not yet run: no PEER run of `experts`, `batchnorm` or `isoflop` with usage in its validations was read.");
            return;
        }

        var plot = new Plot();
        foreach (var (line, i) in lines.Select((l, i) => (l, i)))
        {
            var curve = Curve(line.Point);
            var scatter = plot.Add.ScatterLine(curve.Select(c => Math.Log10(c.TokensSeen)).ToArray(), curve.Select(c => 100 * ResultPoint.Usage(c.Layers)).ToArray());
            scatter.LegendText = Label(line);
            scatter.Color = ReportFigures.SeriesColor(i);
            scatter.LineWidth = 2;
            scatter.MarkerSize = 6;
            if (!Options(line.Point).QueryBatchNorm) scatter.LinePattern = LinePattern.Dashed;
        }
        ReportFigures.LogAxis(plot.Axes.Bottom, lines.SelectMany(l => Curve(l.Point)).Select(c => (double)c.TokensSeen), ReportFormat.Si);
        plot.Title("PEER expert usage during training");
        plot.XLabel("training tokens seen (log scale)");
        plot.YLabel("experts used over the validation text (%)");
        plot.ShowLegend(Edge.Right);
        figures.Add(markdown, plot, "usage", "expert usage against training tokens seen, per PEER run");
        markdown.Paragraph("At each validation: the share of the N experts that received any gate weight over the validation text (mean over the " +
                           "model's PEER layers); dashed lines are runs without query BatchNorm. First seed of each run.");

        markdown.Table(["experiment", "run", "budget", "N", "query BN", "validations", "usage, first (tokens)", "usage, last (tokens)", "unevenness, first → last"],
            "lllrlrrrr",
            lines.Select(line =>
            {
                var curve = Curve(line.Point);
                CurvePoint first = curve[0], last = curve[^1];
                return (IReadOnlyList<string>)[
                    line.Experiment, line.Point.Run, ReportFormat.Budget(line.Point.Budget), ReportFormat.ExpertCount(Options(line.Point).SubKeyCount),
                    Options(line.Point).QueryBatchNorm ? "on" : "off", curve.Count.ToString(),
                    $"{ReportFormat.Percent(ResultPoint.Usage(first.Layers))} ({ReportFormat.Si(first.TokensSeen)})",
                    $"{ReportFormat.Percent(ResultPoint.Usage(last.Layers))} ({ReportFormat.Si(last.TokensSeen)})",
                    $"{ReportFormat.Number(ResultPoint.Unevenness(first.Layers), "F2")} → {ReportFormat.Number(ResultPoint.Unevenness(last.Layers), "F2")}"];
            }));
    }

    /// <summary>The first seed's validations that measured usage, after some training (the x axis is logarithmic).</summary>
    static List<CurvePoint> Curve(ResultPoint point) => [.. point.First.Curve.Where(c => c.Layers.Count > 0 && c.TokensSeen > 0)];

    static Layers.PeerOptions Options(ResultPoint point) => point.First.Config.Model.PeerOptions;

    static string Label(Line line) =>
        $"{line.Experiment}: {line.Point.Run}, N = {Options(line.Point).SubKeyCount}²" + (line.Experiment == ExperimentReport.IsoFlop ? $", {ReportFormat.Budget(line.Point.Budget)}" : "");
}
