using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// PEER with more and more experts at the same number of active ones (paper Section 3.2, Figure 3a): bpb
/// against N = n² with h·k fixed, and how many of the experts get used.
/// </summary>
static class ExpertCountSection
{
    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points)
    {
        var sorted = points.OrderBy(p => p.Budget).ThenBy(p => p.SubKeyCount).ThenBy(p => p.Run, StringComparer.Ordinal).ToList();
        var plot = new Plot();
        foreach (var (budget, i) in sorted.GroupBy(p => p.Budget).Select((g, i) => (g, i)))
        {
            var line = plot.Add.ScatterLine(budget.Select(p => Math.Log2(p.ExpertCount)).ToArray(), budget.Select(p => p.ValidationBitsPerByte).ToArray());
            line.LegendText = $"{ReportFormat.Budget(budget.Key)} training FLOPs";
            line.Color = ReportFigures.SeriesColor(i);
            line.LineWidth = 2;
            line.MarkerSize = 7;
        }
        ReportFigures.Log2Axis(plot.Axes.Bottom, sorted.Select(p => p.ExpertCount), n => $"{Math.Round(Math.Sqrt(n))}²");
        plot.Title("PEER: number of experts N at fixed h·k");
        plot.XLabel("experts N = n² (log scale)");
        plot.YLabel("validation bits per byte");
        plot.ShowLegend(Edge.Right);   // outside the data: an inside corner can hide a point
        figures.Add(markdown, plot, "experts", "validation bits per byte against the number of experts N");

        var domains = DomainColumns.Of(sorted);
        markdown.Table(["budget", "run", "N", "h", "k", "parameters", "validation bpb", "test bpb", .. domains.Header, "usage", "unevenness (nats)", "log N", "seeds"],
            "llrrrrrr" + domains.Align + "rrrr",
            sorted.Select(p => (IReadOnlyList<string>)[
                ReportFormat.Budget(p.Budget), p.Run, ReportFormat.ExpertCount(p.SubKeyCount), p.First.Config.Model.PeerOptions.HeadCount.ToString(), p.First.Config.Model.PeerOptions.TopK.ToString(),
                ReportFormat.Si(p.First.Parameters), p.Of(r => r.Validation.BitsPerByte).Format("F3"), p.Of(r => r.Test?.BitsPerByte ?? double.NaN).Format("F3"), .. domains.Cells(p),
                p.Of(r => ResultPoint.Usage(r.Validation.Layers)).Percent(), p.Of(r => ResultPoint.Unevenness(r.Validation.Layers)).Format("F2"),
                ReportFormat.Number(Math.Log(p.ExpertCount), "F2"), p.Seeds.Count.ToString()]));
        markdown.Paragraph("Usage and unevenness over the validation text at the end of training; log N is the unevenness of all gate weight on one expert.");
    }

}
