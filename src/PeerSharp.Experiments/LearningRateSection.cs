namespace PeerSharp.Experiments;

/// <summary>
/// Tuned baselines (issue 20, item 3): each method at one size and budget over several learning rates, and PEER's
/// and PKM's expert tables at their own rate or optimizer state. One table, method by method; for each setting of the
/// tables with two rates or more, the best rate and whether it lies inside the rates tried or at an end of them
/// (where the best rate may lie beyond).
/// </summary>
static class LearningRateSection
{
    public static void Write(MarkdownWriter markdown, IReadOnlyList<ResultPoint> points)
    {
        var domains = DomainColumns.Of(points);
        var best = points.GroupBy(p => (p.Method, p.Budget)).Select(g => Best(g)!).ToHashSet();
        var methods = points.GroupBy(p => p.Method).OrderBy(g => ResultPoint.MethodOrder(g.Key)).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
        markdown.Table(["method", "run", "budget", "parameters", "learning rate", "expert tables", "validation bpb", "test bpb", .. domains.Header, "seeds"],
            "lllrll" + "rr" + domains.Align + "r",
            methods.SelectMany(method => method.OrderBy(Tables, StringComparer.Ordinal).ThenBy(p => p.First.Config.Train.LearningRate)).Select(p =>
            {
                var validation = p.Of(r => r.Validation.BitsPerByte).Format("F3");
                return (IReadOnlyList<string>)[
                    p.Method, p.Run, ReportFormat.Budget(p.Budget), ReportFormat.Si(p.First.Parameters), Rate(p.First.Config.Train.LearningRate), Tables(p),
                    best.Contains(p) ? $"**{validation}**" : validation,
                    p.Of(r => r.Test?.BitsPerByte ?? double.NaN).Format("F3"), .. domains.Cells(p), p.Seeds.Count.ToString()];
            }));
        markdown.Paragraph("In bold: each method's lowest validation bpb at its budget. Expert tables: \"schedule\" when the tables follow the " +
                           "run's learning-rate schedule, \"fixed R\" when they train at their own constant rate R (`expertLearningRate`); then " +
                           "the tables' optimizer state (`tableState`). Methods without expert tables show a dash.");
        markdown.Bullets(methods.SelectMany(method => method.GroupBy(Tables).Where(g => g.Select(p => p.First.Config.Train.LearningRate).Distinct().Count() >= 2)
            .Select(g =>
            {
                var sorted = g.OrderBy(p => p.First.Config.Train.LearningRate).ToList();
                var winner = Best(sorted)!;
                var where = winner == sorted[0] ? "the lowest rate tried, so a lower one may be better"
                    : winner == sorted[^1] ? "the highest rate tried, so a higher one may be better"
                    : "inside the rates tried";
                var tables = Tables(winner) is var setting && setting == ReportFormat.Unknown ? "" : $" (expert tables: {setting})";
                return $"{method.Key}{tables}: best learning rate {Rate(winner.First.Config.Train.LearningRate)} of " +
                       $"{string.Join(", ", sorted.Select(p => Rate(p.First.Config.Train.LearningRate)))}, validation " +
                       $"{ReportFormat.Number(winner.ValidationBitsPerByte, "F3")} bits per byte; {where}.";
            })));
    }

    static ResultPoint? Best(IEnumerable<ResultPoint> points) => points.MinBy(p => p.ValidationBitsPerByte);

    static string Rate(double rate) => ReportFormat.Number(rate, "0.####e0");

    /// <summary>How a run trains its expert tables: their rate and optimizer state; a dash for a model without them.</summary>
    static string Tables(ResultPoint point)
    {
        var (model, train) = (point.First.Config.Model, point.First.Config.Train);
        if (!model.FeedForwardKinds().Any(kind => kind is Model.FeedForwardKind.Peer or Model.FeedForwardKind.Pkm)) return ReportFormat.Unknown;
        var rate = train.ExpertLearningRate is { } fixedRate ? $"fixed {Rate(fixedRate)}" : "schedule";
        return $"{rate}, {EnumNames.Name(train.TableState)}";
    }
}
