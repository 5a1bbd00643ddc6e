using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// The expert-count curve done as a reviewer asks (issue 19, section 2): bits per byte against N at fixed h·k, over
/// seeds, with usage and tokens per expert beside it, and for each step up in N whether the change is beyond the
/// seeds' spread. The same section serves the equal-tokens and the equal-FLOPs run of it.
/// </summary>
static class ExpertCurveSection
{
    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, string name)
    {
        var sorted = points.OrderBy(p => p.SubKeyCount).ToList();
        var xs = sorted.Select(p => Math.Log2(p.ExpertCount)).ToArray();
        var plot = new Plot();
        foreach (var (label, score, i) in new (string, Func<SweepResult, double>, int)[]
                 { ("validation", r => r.Validation.BitsPerByte, 0), ("test", r => r.Test?.BitsPerByte ?? double.NaN, 1) })
        {
            var estimates = sorted.Select(p => p.Of(score)).ToList();
            var line = plot.Add.ScatterLine(xs, estimates.Select(e => e.Mean).ToArray());
            line.LegendText = label;
            line.Color = ReportFigures.SeriesColor(i);
            line.LineWidth = 2;
            line.MarkerSize = 7;
            var bars = plot.Add.ErrorBar(xs, estimates.Select(e => e.Mean).ToArray(), estimates.Select(e => e.Count > 1 ? e.Deviation : 0).ToArray());
            bars.Color = line.Color;
        }
        ReportFigures.Log2Axis(plot.Axes.Bottom, sorted.Select(p => p.ExpertCount), n => $"{Math.Round(Math.Sqrt(n))}²");
        plot.Title("PEER: bits per byte against the number of experts N (h·k fixed; bars: sd over seeds)");
        plot.XLabel("experts N = n² (log scale)");
        plot.YLabel("bits per byte, whole split");
        plot.ShowLegend(Edge.Right);
        figures.Add(markdown, plot, name, "bits per byte against the number of experts N, mean and standard deviation over seeds");

        var domains = DomainColumns.Of(sorted);
        markdown.Table(["N", "parameters", "steps", "training tokens", "tokens per expert", "validation bpb", "test bpb", .. domains.Header, "usage", "unevenness (nats)", "first choices per head", "seeds"],
            "lrrrrrr" + domains.Align + "rrrr",
            sorted.Select(p => (IReadOnlyList<string>)[
                ReportFormat.ExpertCount(p.SubKeyCount), ReportFormat.Si(p.First.Parameters), p.First.Steps.ToString("N0"), ReportFormat.Si(p.First.Tokens),
                ReportFormat.Number(p.First.Tokens / p.ExpertCount, "F1"),
                p.Of(r => r.Validation.BitsPerByte).Format("F3"), p.Of(r => r.Test?.BitsPerByte ?? double.NaN).Format("F3"), .. domains.Cells(p),
                p.Of(r => ResultPoint.Usage(r.Validation.Layers)).Percent(), p.Of(r => ResultPoint.Unevenness(r.Validation.Layers)).Format("F2"),
                p.Of(r => r.Validation.Layers.Any(l => l.FirstChoices > 0) ? r.Validation.Layers.Average(l => l.FirstChoices) : double.NaN).Format("F0"), p.Seeds.Count.ToString()]));
        markdown.Paragraph("Tokens per expert: training tokens over N (each token reaches h·k of them). Usage, unevenness and first choices over the validation split at the end of training.");
        markdown.Bullets(Steps(sorted));
    }

    /// <summary>For each step up in N, the change of validation bpb and whether it is beyond the seed spread (<see cref="Estimate.DiffersBeyondSpread"/>).</summary>
    static IEnumerable<string> Steps(IReadOnlyList<ResultPoint> sorted)
    {
        for (int i = 1; i < sorted.Count; i++)
        {
            var (from, to) = (sorted[i - 1].Of(r => r.Validation.BitsPerByte), sorted[i].Of(r => r.Validation.BitsPerByte));
            var change = to.Mean - from.Mean;
            var verdict = from.DiffersBeyondSpread(to) switch
            {
                null => "one seed at one end: no spread to compare with",
                true => change < 0 ? "falls beyond the seed spread" : "rises beyond the seed spread",
                false => "within the seed spread (tied)",
            };
            yield return $"{ReportFormat.ExpertCount(sorted[i - 1].SubKeyCount)} → {ReportFormat.ExpertCount(sorted[i].SubKeyCount)}: " +
                         $"{ReportFormat.Number(change, "+0.000;-0.000")} bits per byte, {verdict}.";
        }
    }

}
