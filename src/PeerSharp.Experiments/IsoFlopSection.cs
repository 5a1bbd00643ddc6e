using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// The isoFLOP comparison (paper Section 3.1): every method at several model sizes, each trained to the same
/// FLOP budgets. Figure 2's curves (validation bpb against parameters, one panel per budget), Table 1 (each
/// method's compute-optimal run per budget, scored on test text), the same runs at equal wall-clock time, and
/// where the compute-optimal PEER models spend their FLOPs.
/// </summary>
static class IsoFlopSection
{
    /// <summary>The section for experiment <paramref name="name"/> (isoflop, or a grid like it); its figures are named after it.</summary>
    public static void Write(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, IReadOnlyDictionary<string, RunTiming> timings, string name)
    {
        var optimal = ComputeOptimal(points);
        Curves(markdown, figures, points, optimal, name);
        Table(markdown, points, optimal);
        FittedOptima(markdown, points);
        AgainstBaselines(markdown, optimal);
        WallClockSection.Write(markdown, figures, points, optimal, timings, name);
        FlopsOfPeer(markdown, optimal.Where(p => p.Method == "peer").ToList());
    }

    /// <summary>Per budget and method, the point with the lowest mean validation bpb, in budget and method order.</summary>
    public static IReadOnlyList<ResultPoint> ComputeOptimal(IReadOnlyList<ResultPoint> points) =>
        [.. points.GroupBy(p => (p.Budget, p.Method)).Select(g => g.MinBy(p => p.ValidationBitsPerByte)!)
                  .OrderBy(p => p.Budget).ThenBy(p => ResultPoint.MethodOrder(p.Method)).ThenBy(p => p.Method, StringComparer.Ordinal)];

    static void Curves(MarkdownWriter markdown, ReportFigures figures, IReadOnlyList<ResultPoint> points, IReadOnlyList<ResultPoint> optimal, string name)
    {
        var budgets = points.Select(p => p.Budget).Distinct().Order().ToList();
        int columns = Math.Min(2, budgets.Count), rows = (budgets.Count + 1) / 2;
        var grid = new Multiplot();
        grid.AddPlots(budgets.Count);
        grid.Layout = new ScottPlot.MultiplotLayouts.Grid(rows, columns);
        foreach (var (budget, panel) in budgets.Select((b, i) => (b, grid.GetPlot(i))))
        {
            var atBudget = points.Where(p => p.Budget == budget).ToList();
            foreach (var method in atBudget.GroupBy(p => p.Method))
            {
                var sizes = method.OrderBy(p => p.First.Parameters).ToList();
                var line = panel.Add.ScatterLine(sizes.Select(p => Math.Log10(p.First.Parameters)).ToArray(), sizes.Select(p => p.ValidationBitsPerByte).ToArray());
                line.LegendText = method.Key;
                line.Color = ReportFigures.MethodColor(method.Key);
                line.LineWidth = 2;
                line.MarkerSize = 7;
                var best = optimal.Single(p => p.Budget == budget && p.Method == method.Key);
                var mark = panel.Add.Marker(Math.Log10(best.First.Parameters), best.ValidationBitsPerByte, MarkerShape.OpenCircle, 16, line.Color);
                mark.LineWidth = 2;
            }
            ReportFigures.LogAxis(panel.Axes.Bottom, atBudget.Select(p => (double)p.First.Parameters), ReportFormat.Si);
            panel.Title($"{ReportFormat.Budget(budget)} training FLOPs");
            panel.XLabel("parameters (total, log scale)");
            panel.YLabel("validation bits per byte");
            panel.ShowLegend(Alignment.UpperRight);
        }
        figures.Add(markdown, grid, rows, name, "isoFLOP curves: validation bits per byte against parameters, one panel per budget");
        markdown.Paragraph("One line per method; a point per model size, trained for as many steps as the budget buys (steps = budget / " +
                           "training FLOPs per step, the same tokens per step everywhere). The open circle marks each method's compute-optimal " +
                           "run. The x axis counts every parameter; a token's forward uses only a fraction of those of MoE, PKM and PEER, given " +
                           "as active parameters in the table below. Points with several seeds are drawn at their mean.");
    }

    static void Table(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points, IReadOnlyList<ResultPoint> optimal)
    {
        markdown.Heading(3, "Table 1: compute-optimal runs");
        var domains = DomainColumns.Of(optimal);
        markdown.Table(
            ["budget", "method", "compute-optimal run", "size rank", "parameters", "active / token", "validation bpb", "test bpb", .. domains.Header, "test perplexity / token", "seeds"],
            "lllrrrrr" + domains.Align + "rr",
            optimal.Select(p =>
            {
                var sizes = points.Where(q => q.Budget == p.Budget && q.Method == p.Method).OrderBy(q => q.First.Parameters).ToList();
                var winner = optimal.Where(q => q.Budget == p.Budget).MinBy(q => q.ValidationBitsPerByte) == p;
                return (IReadOnlyList<string>)[
                    ReportFormat.Budget(p.Budget), winner ? $"**{p.Method}**" : p.Method, p.Run, $"{sizes.IndexOf(p) + 1} of {sizes.Count}",
                    ReportFormat.Si(p.First.Parameters), ReportFormat.Si(p.First.ActiveParameters),
                    p.Of(r => r.Validation.BitsPerByte).Format("F3"), p.Of(r => r.Test?.BitsPerByte ?? double.NaN).Format("F3"), .. domains.Cells(p),
                    p.Of(r => r.Test?.Perplexity ?? double.NaN).Format("F2"), p.Seeds.Count.ToString()];
            }));
        var tokenizers = optimal.Select(p => p.First.Config.Model.Tokenizer).Distinct().ToList();
        markdown.Bullets([
            "The method in bold has the lowest validation bpb at its budget.",
            "Size rank: the compute-optimal run's place among the method's sizes at that budget, smallest first; at 1 or at the last, the true optimum may lie outside the sizes tried.",
            "Test perplexity is exp(test loss in nats per token)" + (tokenizers is [Data.TokenizerKind.Byte]
                ? "; with the byte tokenizer every token is one byte, so it is a per-byte perplexity, 2^(test bpb)."
                : $", per token of the run's tokenizer ({string.Join(", ", tokenizers.Select(EnumNames.Name))}); only bpb compares across tokenizers."),
            .. optimal.Any(p => p.First.Test is null) ? ["A dash: the spec gives no test text, so the run was not scored on one."] : Array.Empty<string>(),
        ]);
    }

    /// <summary>Per budget and method, the parabola in log size through the sizes' mean validation bpb (<see cref="IsoFlopFit"/>).</summary>
    static void FittedOptima(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points)
    {
        markdown.Heading(3, "Fitted optimum per budget: a parabola in log parameters");
        markdown.Table(["budget", "method", "sizes", "fitted optimum: parameters", "fitted optimum: validation bpb", "best size tried", "where the fitted optimum lies"], "llrrrll",
            points.GroupBy(p => (p.Budget, p.Method)).Select(g =>
            {
                var sizes = g.OrderBy(p => p.First.Parameters).ToList();
                var best = sizes.MinBy(p => p.ValidationBitsPerByte)!;
                var fit = IsoFlopFit.Of([.. sizes.Select(p => (Math.Log10(p.First.Parameters), p.ValidationBitsPerByte))]);
                var interior = fit is { Interior: true };
                return (IReadOnlyList<string>)[
                    ReportFormat.Budget(g.Key.Budget), g.Key.Method, sizes.Count.ToString(),
                    interior ? ReportFormat.Si(Math.Pow(10, fit!.Value.Vertex)) : ReportFormat.Unknown,
                    interior ? ReportFormat.Number(fit!.Value.Minimum, "F3") : ReportFormat.Unknown,
                    $"{best.Run} ({ReportFormat.Number(best.ValidationBitsPerByte, "F3")})",
                    fit is { } f ? f.Where : "fewer than three sizes: no fit"];
            }));
        markdown.Paragraph("A least-squares parabola of validation bpb (mean over seeds) against log10 of the parameters, per budget and " +
                           "method, as isoFLOP analyses fit the optimum (Hoffmann et al. 2022). Its vertex is a compute-optimal size only when " +
                           "the parabola opens upward and the vertex lies within the sizes tried; otherwise the grid does not bracket the " +
                           "optimum, and the column says on which side it lies.");
    }

    /// <summary>
    /// At each budget, PEER's compute-optimal run against each other method's, paired by seed: the mean of the per-seed
    /// differences, and whether the two runs differ beyond their seed spread (<see cref="Estimate.DiffersBeyondSpread"/>).
    /// </summary>
    static void AgainstBaselines(MarkdownWriter markdown, IReadOnlyList<ResultPoint> optimal)
    {
        markdown.Heading(3, "PEER against each baseline, paired by seed");
        var rows = new List<IReadOnlyList<string>>();
        foreach (var peer in optimal.Where(p => p.Method == "peer"))
            foreach (var baseline in optimal.Where(p => p.Budget == peer.Budget && p.Method != "peer"))
            {
                var cells = new List<string> { ReportFormat.Budget(peer.Budget), $"{baseline.Method} ({baseline.Run})", peer.Run };
                foreach (Func<SweepResult, double> score in new Func<SweepResult, double>[] { r => r.Validation.BitsPerByte, r => r.Test?.BitsPerByte ?? double.NaN })
                {
                    var (ours, theirs) = (peer.Of(score), baseline.Of(score));
                    var paired = Estimate.Of(baseline.Seeds.Join(peer.Seeds, b => b.Seed, p => p.Seed, (b, p) => score(b) - score(p)));
                    var ahead = theirs.Mean > ours.Mean ? "PEER" : baseline.Method;
                    cells.Add(paired.Format("+0.000;-0.000", "0.000"));
                    cells.Add(ours.DiffersBeyondSpread(theirs) switch
                    {
                        null => double.IsNaN(paired.Mean) ? ReportFormat.Unknown : "one seed: not judged",
                        true => $"{ahead} ahead",
                        false => "tied",
                    });
                }
                rows.Add(cells);
            }
        if (rows.Count == 0)
        {
            markdown.Paragraph("No budget has a PEER run beside a baseline.");
            return;
        }
        markdown.Table(["budget", "baseline (compute-optimal run)", "PEER run", "validation: baseline − PEER", "validation", "test: baseline − PEER", "test"], "lllrlrl", rows);
        markdown.Paragraph("Differences in bits per byte over the seeds both runs have (positive: PEER is lower, i.e. better), mean ± sd of the " +
                           "per-seed differences. A verdict needs two seeds or more on each side: \"ahead\" when the two runs' means differ by more " +
                           "than the sum of their seed standard deviations, \"tied\" otherwise.");
    }

    static void FlopsOfPeer(MarkdownWriter markdown, IReadOnlyList<ResultPoint> peer)
    {
        markdown.Heading(3, "Forward FLOPs per token of the compute-optimal PEER models");
        if (peer.Count == 0)
        {
            markdown.Paragraph("No PEER run among these results.");
            return;
        }
        markdown.Paragraph("Matrix products count 2 FLOPs per multiply-add; product-key selection (the k² candidates and top-k) counts 1 FLOP " +
                           "per candidate sum and per element a top-k scans. Training counts 3 × the forward (a backward of twice its cost).");
        foreach (var p in peer)
        {
            var r = p.First;
            var model = r.Config.Model;
            var options = model.PeerOptions;
            markdown.Paragraph($"**{p.Run} at {ReportFormat.Budget(p.Budget)}**: d_model {model.ModelDim}, {model.LayerCount} blocks, context {model.ContextLength}; " +
                               $"N = {ReportFormat.ExpertCount(options.SubKeyCount)}, h = {options.HeadCount}, k = {options.TopK}, d_key = {options.KeyDim}; " +
                               $"{ReportFormat.Number(r.ForwardFlopsPerToken, "N0")} forward FLOPs per token.");
            markdown.Table(["part", "FLOPs / token", "share"], "lrr",
                r.FlopsByPart.Select(part => (IReadOnlyList<string>)[part.Part, ReportFormat.Number(part.Flops, "N0"), ReportFormat.Percent(part.Flops / r.ForwardFlopsPerToken)]));
        }
    }
}
