using ScottPlot;
using PeerSharp.Model;

namespace PeerSharp.Experiments;

/// <summary>One phase-2 arm's outcome: bits per byte on A and B where phase 2 starts and where it ends.</summary>
/// <param name="Result">The arm's results line.</param>
/// <param name="AStart">A's validation bits per byte at the start of phase 2.</param>
/// <param name="AEnd">… at its end.</param>
/// <param name="BStart">B's validation bits per byte at the start of phase 2.</param>
/// <param name="BEnd">… at its end.</param>
public sealed record LifelongOutcome(SweepResult Result, double AStart, double AEnd, double BStart, double BEnd)
{
    /// <summary>Forgetting: the rise of A's bits per byte over phase 2.</summary>
    public double Forgetting => AEnd - AStart;

    /// <summary>Learning: the fall of B's bits per byte over phase 2.</summary>
    public double Learning => BStart - BEnd;

    /// <summary>The average over the domains seen (A and B) at the end of phase 2, the continual-learning literature's average loss.</summary>
    public double AverageEnd => (AEnd + BEnd) / 2;

    /// <summary>
    /// Backward transfer (Lopez-Paz and Ranzato 2017) in bits per byte: how much training on B lowered A's loss,
    /// AStart − AEnd, so that, as in the accuracy form, a negative value is forgetting.
    /// </summary>
    public double BackwardTransfer => -Forgetting;

    /// <summary>The outcomes of the phase-2 lines of a results file (those with an "A" curve and no "B" one), in file order.</summary>
    public static IReadOnlyList<LifelongOutcome> Of(IEnumerable<SweepResult> results) =>
        [.. results.Where(r => r.Curve.Any(p => p.Text == "A") && r.Curve.All(p => p.Text != "B")).Select(r =>
        {
            var a = r.Curve.Where(p => p.Text == "A").ToList();
            var b = r.Curve.Where(p => p.Text is null).ToList();
            return new LifelongOutcome(r, a[0].BitsPerByte, a[^1].BitsPerByte, b[0].BitsPerByte, b[^1].BitsPerByte);
        })];
}

/// <summary>
/// One phase-3 arm's outcome: bits per byte on A, B and C where phase 3 starts and where it ends, with the phase-2 arm
/// it continues (for what each domain scored right after its own phase).
/// </summary>
/// <param name="Result">The arm's results line.</param>
/// <param name="Before">The phase-2 arm it continues.</param>
/// <param name="AEnd">A's validation bits per byte at the end of phase 3.</param>
/// <param name="BStart">B's at the start of phase 3, right after training on B.</param>
/// <param name="BEnd">B's at the end of phase 3.</param>
/// <param name="CStart">C's at the start of phase 3.</param>
/// <param name="CEnd">C's at the end of phase 3.</param>
public sealed record Phase3Outcome(SweepResult Result, LifelongOutcome Before, double AEnd, double BStart, double BEnd, double CStart, double CEnd)
{
    /// <summary>The average over the three domains seen at the end.</summary>
    public double AverageEnd => (AEnd + BEnd + CEnd) / 3;

    /// <summary>
    /// Backward transfer over A and B (Lopez-Paz and Ranzato 2017) in bits per byte: the mean over the earlier domains
    /// of the score right after its own phase minus the score at the end; negative is forgetting.
    /// </summary>
    public double BackwardTransfer => ((Before.AStart - AEnd) + (BStart - BEnd)) / 2;

    /// <summary>Learning: the fall of C's bits per byte over phase 3.</summary>
    public double Learning => CStart - CEnd;

    /// <summary>The outcomes of the phase-3 lines of a results file (those with a "B" curve), each with the phase-2 arm it continued.</summary>
    public static IReadOnlyList<Phase3Outcome> Of(IEnumerable<SweepResult> results, IReadOnlyList<LifelongOutcome> phase2) =>
        [.. results.Where(r => r.Curve.Any(p => p.Text == "B")).Select(r =>
        {
            double First(string? text) => r.Curve.First(p => p.Text == text).BitsPerByte;
            double Last(string? text) => r.Curve.Last(p => p.Text == text).BitsPerByte;
            var before = phase2.SingleOrDefault(o => o.Result.Id == r.ContinuesFrom)
                ?? throw new PeerSharpException($"phase-3 result {r.Id} continues '{r.ContinuesFrom}', which the results file does not hold");
            return new Phase3Outcome(r, before, Last("A"), First("B"), Last("B"), First(null), Last(null));
        })];
}

/// <summary>
/// The lifelong experiment's report: a Markdown table of forgetting and learning per arm and, per arm, a PNG of A's
/// and B's validation bits per byte over phase 2 (plus all arms together), generated from the results file alone.
/// </summary>
public static class LifelongReport
{
    /// <summary>Writes the report to <paramref name="markdownPath"/> and its figures to <paramref name="figuresFolder"/>; returns the outcomes.</summary>
    public static IReadOnlyList<LifelongOutcome> Write(string resultsPath, string markdownPath, string figuresFolder)
    {
        var lines = ResultsFile.Read(resultsPath).Select(l => l.Result).ToList();
        var all = LifelongOutcome.Of(lines);
        // Arms trained on B from a fresh model are forward transfer's reference, not arms that continue A's model.
        var outcomes = all.Where(o => o.Result.ScratchOf is null).ToList();
        var scratch = all.Where(o => o.Result.ScratchOf is not null).ToDictionary(o => (o.Result.ScratchOf!, o.Result.Seed));
        double? ForwardTransfer(LifelongOutcome o) =>
            o.Result.ContinuesFrom is { } from && scratch.TryGetValue((from, o.Result.Seed), out var alone) ? alone.BEnd - o.BEnd : null;
        var markdown = new MarkdownWriter();
        var figures = new ReportFigures(figuresFolder, markdownPath);
        markdown.Heading(1, "Lifelong learning: results");
        markdown.Paragraph($"Generated by `peer lifelong` from `{Path.GetFileName(resultsPath)}`; docs/LIFELONG.md describes the experiment. " +
                           "Bits per byte on each domain's validation text, at the start and the end of phase 2. Forgetting is the rise on A, " +
                           "learning the fall on B. Training FLOPs count every parameter as trained (frozen parts skip their updates but not the forward).");
        markdown.Table(["arm", "experts", "frozen", "A start", "A end", "forgetting", "B start", "B end", "learning", "phase-2 steps", "phase-2 training FLOPs", "seed"],
            "lrlrrrrrrrrr",
            outcomes.Select(o => (IReadOnlyList<string>)[
                o.Result.Run, Experts(o.Result), Frozen(o.Result),
                o.AStart.ToString("F3"), o.AEnd.ToString("F3"), o.Forgetting.ToString("+0.000;-0.000"),
                o.BStart.ToString("F3"), o.BEnd.ToString("F3"), o.Learning.ToString("+0.000;-0.000"),
                o.Result.Steps.ToString("N0"), ReportFormat.Budget(o.Result.TrainingFlops), o.Result.Seed.ToString()]));
        if (outcomes.Count > 0)
        {
            markdown.Paragraph("The continual-learning measures per arm, over its seeds (a ± b: mean and sample standard deviation, where an arm has two seeds or more): " +
                               "the average of A's and B's bits per byte at the end of phase 2 (the domains seen), backward transfer (A at the start minus A at the end: negative is forgetting), " +
                               "learning on B, and forward transfer: B at the end of the same phase-1 model trained on B alone from a fresh initialisation (an arm with fromScratch, same steps and settings) " +
                               "minus B at the end of the arm, so positive when what the model learnt on A helps it on B (— where the spec has no such arm for the seed).");
            markdown.Table(["arm", "seeds", "A end", "B end", "average of A and B", "backward transfer", "learning on B", "forward transfer", "phase 2 trains by", "parameters"], "lrrrrrrrlr",
                outcomes.GroupBy(o => o.Result.Run).Select(g =>
                {
                    string Of(Func<LifelongOutcome, double> value, string format) => Estimate.Of(g.Select(value)).Format(format);
                    var forward = g.Select(ForwardTransfer).OfType<double>().ToList();
                    return (IReadOnlyList<string>)[g.Key, g.Count().ToString(),
                        Of(o => o.AEnd, "F3"), Of(o => o.BEnd, "F3"), Of(o => o.AverageEnd, "F3"),
                        Of(o => o.BackwardTransfer, "+0.000;-0.000"), Of(o => o.Learning, "+0.000;-0.000"),
                        forward.Count == 0 ? "—" : Estimate.Of(forward).Format("+0.000;-0.000", "0.000"), Baseline(g.First().Result), ReportFormat.Si(g.First().Result.Parameters)];
                }));
        }
        AgainstFineTuning(markdown, outcomes, lines);
        if (scratch.Count > 0)
        {
            markdown.Paragraph("Forward transfer's reference: each phase-1 model trained on B alone from a fresh initialisation, for the phase-2 steps with the phase-2 settings, over its seeds.");
            markdown.Table(["arm", "model of", "seeds", "A end", "B end", "phase 2 trains by", "parameters"], "llrrrlr",
                scratch.Values.GroupBy(o => o.Result.Run).Select(g => (IReadOnlyList<string>)[g.Key, g.First().Result.ScratchOf!.Split('/')[0], g.Count().ToString(),
                    Estimate.Of(g.Select(o => o.AEnd)).Format("F3"), Estimate.Of(g.Select(o => o.BEnd)).Format("F3"), Baseline(g.First().Result), ReportFormat.Si(g.First().Result.Parameters)]));
        }
        var phase3 = Phase3Outcome.Of(lines, all);
        if (phase3.Count > 0)
        {
            markdown.Paragraph("Phase 3: arms that continue a phase-2 arm on domain C, over their seeds. Backward transfer is the mean over A and B of " +
                               "each domain's bits per byte right after its own phase (A: the start of phase 2; B: the start of phase 3) minus at the end of phase 3; negative is forgetting.");
            markdown.Table(["arm", "continues", "seeds", "A end", "B start", "B end", "C start", "C end", "average of A, B and C", "backward transfer", "learning on C", "phase 3 trains by", "frozen"], "llrrrrrrrrrll",
                phase3.GroupBy(o => o.Result.Run).Select(g =>
                {
                    string Of(Func<Phase3Outcome, double> value, string format) => Estimate.Of(g.Select(value)).Format(format);
                    return (IReadOnlyList<string>)[g.Key, g.First().Before.Result.Run, g.Count().ToString(),
                        Of(o => o.AEnd, "F3"), Of(o => o.BStart, "F3"), Of(o => o.BEnd, "F3"), Of(o => o.CStart, "F3"), Of(o => o.CEnd, "F3"),
                        Of(o => o.AverageEnd, "F3"), Of(o => o.BackwardTransfer, "+0.000;-0.000"), Of(o => o.Learning, "+0.000;-0.000"),
                        Baseline(g.First().Result), Frozen(g.First().Result)];
                }));
        }
        var routed = outcomes.Where(o => o.Result.Routing is { Count: > 0 }).ToList();
        if (routed.Count > 0)
        {
            markdown.Paragraph("Routing to the grown experts: of each domain's validation selections, the share that are grown experts " +
                               "(a sub-key of either half at or above the old n), and the share of tokens that reach at least one; at growth and after phase 2 (means over the PEER and PKM layers).");
            markdown.Table(["arm", "seed", "domain", "when", "selections of grown experts", "tokens reaching one"], "lrllrr",
                routed.SelectMany(o => o.Result.Routing!.Select(r => (IReadOnlyList<string>)[
                    o.Result.Run, o.Result.Seed.ToString(), r.Text, r.When,
                    ReportFormat.Percent(r.Layers.Average(l => l.GrownShare)), ReportFormat.Percent(r.Layers.Average(l => l.TokensReachingGrown))])));
        }
        var phase1 = lines.Where(r => r.Curve.All(p => p.Text is null)).ToList();
        if (phase1.Count > 0)
            markdown.Paragraph("Phase 1 on A: " + string.Join("; ", phase1.Select(r => $"{r.Run} {r.Validation.BitsPerByte:F3} bits per byte after {r.Steps:N0} steps")) + ".");

        foreach (var o in outcomes)
        {
            var plot = new Plot();
            foreach (var (text, label, color) in new[] { ("A", "A (forgetting)", 0), ((string?)null, "B (learning)", 1) })
                Line(plot, o.Result, text, label, ReportFigures.SeriesColor(color));
            Decorate(plot, $"{o.Result.Run}: validation bits per byte in phase 2", "phase-2 step (training on B)");
            figures.Add(markdown, plot, $"lifelong-{o.Result.Run}-s{o.Result.Seed}", $"A and B validation bits per byte over phase 2, arm {o.Result.Run}");
        }
        foreach (var o in phase3)
        {
            var plot = new Plot();
            foreach (var (text, label, color) in new[] { ("A", "A", 0), ("B", "B", 1), ((string?)null, "C (learning)", 2) })
                Line(plot, o.Result, text, label, ReportFigures.SeriesColor(color));
            Decorate(plot, $"{o.Result.Run}: validation bits per byte in phase 3", "phase-3 step (training on C)");
            figures.Add(markdown, plot, $"lifelong-{o.Result.Run}-s{o.Result.Seed}", $"A, B and C validation bits per byte over phase 3, arm {o.Result.Run}");
        }
        // The trade-off as curves, not one point: each arm's path through (B, A) over its phase-2 validations, one
        // figure per phase-1 model, so that arms at several learning rates or lengths read as a frontier.
        foreach (var model in outcomes.Where(o => o.Result.ContinuesFrom is not null).GroupBy(o => o.Result.ContinuesFrom!.Split('/')[0]))
        {
            var plot = new Plot();
            foreach (var (o, i) in model.GroupBy(o => o.Result.Run).Select(g => g.MinBy(o => o.Result.Seed)!).Select((o, i) => (o, i)))
            {
                var a = o.Result.Curve.Where(p => p.Text == "A").ToList();
                var b = o.Result.Curve.Where(p => p.Text is null).ToList();
                var scatter = plot.Add.ScatterLine(b.Select(p => p.BitsPerByte).ToArray(), a.Select(p => p.BitsPerByte).ToArray());
                (scatter.LegendText, scatter.Color, scatter.LineWidth, scatter.MarkerSize) = (o.Result.Run, ReportFigures.SeriesColor(i), 2, 5);
            }
            plot.Title($"arms from {model.Key}: A against B over phase 2 (lower left is better)");
            plot.XLabel("B validation bits per byte (learning)");
            plot.YLabel("A validation bits per byte (forgetting)");
            plot.ShowLegend(Edge.Right);
            figures.Add(markdown, plot, $"lifelong-tradeoff-{model.Key}",
                        $"forgetting against learning: A's and B's validation bits per byte at each phase-2 validation, every arm from {model.Key} (its first seed)");
        }
        foreach (var (text, title) in new[] { ("A", "domain A (forgetting)"), ((string?)null, "domain B (learning)") })
        {
            var plot = new Plot();
            foreach (var (o, i) in outcomes.Select((o, i) => (o, i)))
                Line(plot, o.Result, text, o.Result.Run, ReportFigures.SeriesColor(i));
            Decorate(plot, $"all arms: {title}", "phase-2 step (training on B)");
            figures.Add(markdown, plot, $"lifelong-all-{text ?? "B"}", $"validation bits per byte on {title}, every arm");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(markdownPath))!);
        File.WriteAllText(markdownPath, markdown.ToString());
        return outcomes;
    }

    /// <summary>
    /// Each phase-2 arm against plain fine-tuning of the same phase-1 model (nothing frozen, grown, replayed or pulled)
    /// at the arm's learning rate, paired by seed, so the table says which arm wins and whether beyond the seed spread
    /// (<see cref="Estimate.DiffersBeyondSpread"/>, the rule of docs/EXPERIMENTS.md). Plain fine-tuning at another
    /// rate is a point of the trade-off, not an arm against it, and has no row.
    /// </summary>
    static void AgainstFineTuning(MarkdownWriter markdown, IReadOnlyList<LifelongOutcome> outcomes, IReadOnlyList<SweepResult> lines)
    {
        var parameters = lines.ToDictionary(r => r.Id, r => r.Parameters);
        bool PlainFineTuning(LifelongOutcome o) =>
            Baseline(o.Result) == "fine-tuning" && Frozen(o.Result) == "nothing" && parameters.GetValueOrDefault(o.Result.ContinuesFrom ?? "") == o.Result.Parameters;
        var rows = new List<IReadOnlyList<string>>();
        foreach (var arm in outcomes.Where(o => o.Result.ContinuesFrom is not null).GroupBy(o => o.Result.Run))
        {
            var first = arm.First().Result;
            var model = first.ContinuesFrom!.Split('/')[0];
            var reference = outcomes.Where(o => o.Result.ContinuesFrom?.Split('/')[0] == model && PlainFineTuning(o) &&
                                                o.Result.Config.Train.LearningRate == first.Config.Train.LearningRate)
                                    .GroupBy(o => o.Result.Run).FirstOrDefault();
            if (reference is null || reference.Key == arm.Key) continue;
            var pairs = arm.Join(reference, o => o.Result.Seed, o => o.Result.Seed, (a, f) => (Arm: a, FineTuned: f)).ToList();
            if (pairs.Count == 0) continue;
            string Paired(Func<LifelongOutcome, double> value) => Estimate.Of(pairs.Select(p => value(p.Arm) - value(p.FineTuned))).Format("+0.000;-0.000", "0.000");
            var (ours, theirs) = (Estimate.Of(pairs.Select(p => p.Arm.AverageEnd)), Estimate.Of(pairs.Select(p => p.FineTuned.AverageEnd)));
            rows.Add([arm.Key, reference.Key, pairs.Count.ToString(), Paired(o => o.AverageEnd), Paired(o => o.BackwardTransfer), Paired(o => o.Learning),
                      ours.DiffersBeyondSpread(theirs) switch
                      {
                          null => "one seed: not judged",
                          true => ours.Mean < theirs.Mean ? "better" : "worse",
                          false => "tied",
                      }]);
        }
        if (rows.Count == 0) return;
        markdown.Paragraph("Each arm against plain fine-tuning of the same phase-1 model at the same learning rate, over the seeds both have: " +
                           "the mean ± sd of the per-seed differences (arm − fine-tuning). A lower average of A and B is better, a higher backward transfer " +
                           "is less forgetting, a higher learning is more learnt on B. The last column judges the average of A and B: better or worse where the two " +
                           "means differ by more than the sum of their seed standard deviations, tied where they do not.");
        markdown.Table(["arm", "against", "seeds", "average of A and B", "backward transfer", "learning on B", "on the average"], "llrrrrl", rows);
    }

    static void Line(Plot plot, SweepResult r, string? text, string label, Color color)
    {
        var start = r.Curve.Min(p => p.Step);
        var points = r.Curve.Where(p => p.Text == text).ToList();
        var scatter = plot.Add.ScatterLine(points.Select(p => (double)(p.Step - start)).ToArray(), points.Select(p => p.BitsPerByte).ToArray());
        (scatter.LegendText, scatter.Color, scatter.LineWidth, scatter.MarkerSize) = (label, color, 2, 5);
    }

    static void Decorate(Plot plot, string title, string steps)
    {
        plot.Title(title);
        plot.XLabel(steps);
        plot.YLabel("validation bits per byte");
        plot.ShowLegend(Edge.Right);
    }

    /// <summary>The continual-learning baseline an arm runs besides plain fine-tuning: replay, an anchor pull, or neither.</summary>
    static string Baseline(SweepResult r)
    {
        var t = r.Config.Train;
        List<string> parts = [];
        if (t.ReplayFraction > 0) parts.Add($"replay {ReportFormat.Percent(t.ReplayFraction)} of A" + (t.ReplayTokens is { } n ? $" ({ReportFormat.Si(n)} tokens)" : " (all)"));
        if (t.AnchorPull > 0) parts.Add($"L2 pull λ = {t.AnchorPull:G3}");
        return parts.Count == 0 ? "fine-tuning" : string.Join(", ", parts);
    }

    static string Experts(SweepResult r) =>
        r.Config.Model.FeedForwardKinds().Contains(FeedForwardKind.Peer) ? ReportFormat.ExpertCount(r.Config.Model.PeerOptions.SubKeyCount)
            : $"dense ({r.Config.Model.HiddenDim} hidden)";

    static string Frozen(SweepResult r)
    {
        var f = r.Config.Train.Freeze;
        List<string> parts = [];
        if (f.OldSubKeyCount is { } old) parts.Add($"old experts ({old}²)");
        if (f.OldHiddenUnits is { } units) parts.Add($"old hidden units ({units})");
        if (f.SubKeys) parts.Add("sub-keys");
        if (f.Queries) parts.Add("queries");
        if (f.Backbone) parts.Add("backbone");
        return parts.Count == 0 ? "nothing" : string.Join(", ", parts);
    }
}
