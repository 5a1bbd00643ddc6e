namespace PeerSharp.Experiments;

/// <summary>
/// `peer report`: docs/EXPERIMENTS.md and its figures from the sweeps' results files alone. One section per
/// experiment of the paper's evaluation (isoFLOP comparison, number of experts, active experts, query BatchNorm)
/// plus expert usage over training and every run read. Results arrive over days, so every section works with
/// whatever subset exists and says what is not yet run. The file is generated content only; conclusions belong
/// in a hand-written document.
/// </summary>
public static class ExperimentReport
{
    /// <summary>The experiments the report has a section for (spec names).</summary>
    public const string IsoFlop = "isoflop", Experts = "experts", Active = "active", BatchNorm = "batchnorm",
                        RetrievalScreen = "retrieval-screen", Retrieval = "retrieval", ExpertCurve = "expert-curve", ExpertCurveFlops = "expert-curve-flops",
                        SparseUpdates = "sparse-updates", IsoFlopExtended = "isoflop-u", MoeRouting = "moe-routing", LearningRates = "lr-sweep";

    static readonly string[] WithSection = [IsoFlop, Experts, Active, BatchNorm, RetrievalScreen, Retrieval, ExpertCurve, ExpertCurveFlops, SparseUpdates,
                                            IsoFlopExtended, MoeRouting, LearningRates];

    /// <summary>
    /// Reads <paramref name="resultsFiles"/> and writes the report to <paramref name="markdownPath"/> and its figures
    /// to <paramref name="figuresFolder"/>; returns the files written. Every file is read before anything is
    /// written, so a bad line (a <see cref="PeerSharpException"/> naming FILE:LINE) leaves the old report in place.
    /// </summary>
    public static IReadOnlyList<string> Write(IReadOnlyList<string> resultsFiles, string markdownPath, string figuresFolder)
    {
        var lines = resultsFiles.SelectMany(ResultsFile.Read).ToList();
        var duplicate = lines.GroupBy(l => (l.Result.Experiment, l.Result.Id)).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new PeerSharpException($"run '{duplicate.Key.Id}' of experiment '{duplicate.Key.Experiment}' appears twice, at {string.Join(" and ", duplicate.Select(l => l.Where))}; expected each run once");

        var markdown = new MarkdownWriter();
        var figures = new ReportFigures(figuresFolder, markdownPath);
        var experiments = lines.GroupBy(l => l.Result.Experiment).ToDictionary(g => g.Key, g => g.ToList());
        var points = experiments.ToDictionary(e => e.Key, e => ResultPoint.Group(e.Value.Select(l => l.Result)));
        IReadOnlyList<ResultPoint> Points(string experiment) => points.GetValueOrDefault(experiment) ?? [];

        Header(markdown, resultsFiles, lines, markdownPath, figuresFolder);
        Section(markdown, experiments, "1. Dense, MoE, PKM and PEER at equal training FLOPs (paper Figure 2, Table 1)", IsoFlop,
            () => IsoFlopSection.Write(markdown, figures, Points(IsoFlop), Timings(experiments.GetValueOrDefault(IsoFlop) ?? [], IsoFlop), IsoFlop));
        Section(markdown, experiments, "2. Number of experts N (paper Figure 3a)", Experts,
            () => ExpertCountSection.Write(markdown, figures, Points(Experts)));
        Section(markdown, experiments, "3. Number of active experts h·k (paper Figure 3b)", Active,
            () => ActiveExpertsSection.Write(markdown, figures, Points(Active)));
        Section(markdown, experiments, "4. Query BatchNorm: expert usage and unevenness (paper Table 2)", BatchNorm,
            () => BatchNormSection.Write(markdown, Points(BatchNorm)));
        Section(markdown, experiments, "5. Keeping experts alive: the retrieval levers, one seed each", RetrievalScreen,
            () => RetrievalSection.Write(markdown, Points(RetrievalScreen)));
        Section(markdown, experiments, "6. Keeping experts alive: the winners at N = 128² and 1024², two seeds", Retrieval,
            () => RetrievalSection.Write(markdown, Points(Retrieval)));
        Section(markdown, experiments, "7. The expert-count curve with the default retrieval, equal tokens, seeds", ExpertCurve,
            () => ExpertCurveSection.Write(markdown, figures, Points(ExpertCurve), ExpertCurve));
        Section(markdown, experiments, "8. The expert-count curve at equal training FLOPs, seeds", ExpertCurveFlops,
            () => ExpertCurveSection.Write(markdown, figures, Points(ExpertCurveFlops), ExpertCurveFlops));
        Section(markdown, experiments, "9. The expert tables' optimizer state and the update in the backward (docs/SPARSE_UPDATES.md)", SparseUpdates,
            () => SparseUpdatesSection.Write(markdown, Points(SparseUpdates)));
        Section(markdown, experiments, "10. The isoFLOP grid extended below xs, with causal MoE and today's PEER retrieval", IsoFlopExtended,
            () => IsoFlopSection.Write(markdown, figures, Points(IsoFlopExtended), Timings(experiments.GetValueOrDefault(IsoFlopExtended) ?? [], IsoFlopExtended), IsoFlopExtended));
        Section(markdown, experiments, "11. MoE routing: expert choice against causal token choice at equal FLOPs", MoeRouting,
            () => IsoFlopSection.Write(markdown, figures, Points(MoeRouting), Timings(experiments.GetValueOrDefault(MoeRouting) ?? [], MoeRouting), MoeRouting));
        Section(markdown, experiments, "12. Tuned baselines: each method's learning rate, and the expert tables' rate and state", LearningRates,
            () => LearningRateSection.Write(markdown, Points(LearningRates)));
        UsageSection.Write(markdown, figures, Points(IsoFlop), Points(Experts), Points(BatchNorm));
        AllRuns(markdown, points);

        var folder = Path.GetDirectoryName(Path.GetFullPath(markdownPath))!;
        Directory.CreateDirectory(folder);
        // Through a temporary file, so that an interrupted write never leaves half a report.
        var temporary = markdownPath + ".tmp";
        File.WriteAllText(temporary, markdown.ToString());
        File.Move(temporary, markdownPath, overwrite: true);
        return [markdownPath, .. figures.Written];
    }

    static void Header(MarkdownWriter markdown, IReadOnlyList<string> files, List<ResultLine> lines, string markdownPath, string figuresFolder)
    {
        markdown.Heading(1, "Experiments");
        markdown.Paragraph("Generated by `peer report` from the sweeps' results files; do not edit this file, rerun the command instead:");
        markdown.Paragraph("    " + string.Join(' ', ["peer", "report", .. files.Select(Quote), "--out", Quote(markdownPath), "--figures", Quote(figuresFolder)]));
        markdown.Table(["results file", "runs read", "experiments", "last run finished (UTC)"], "lrll",
            files.Distinct().Select(file =>
            {
                var read = lines.Where(l => l.File == file).ToList();
                return (IReadOnlyList<string>)[file, read.Count.ToString(), string.Join(", ", read.Select(l => l.Result.Experiment).Distinct().Order()),
                    read.Count == 0 ? ReportFormat.Unknown : ReportFormat.Time(read.Max(l => l.Result.FinishedAt))];
            }));

        var present = lines.Select(l => l.Result.Experiment).ToHashSet();
        var notRun = WithSection.Where(e => !present.Contains(e)).ToList();
        var unknown = present.Where(e => !WithSection.Contains(e)).Order().ToList();
        markdown.Bullets([
            notRun.Count == 0 ? "Every experiment of this report has results." : $"Not yet run (no results read): {string.Join(", ", notRun.Select(e => $"`{e}`"))}.",
            .. unknown.Count == 0 ? Array.Empty<string>() : [$"Experiments without a section of their own, listed under \"Every run read\" only: {string.Join(", ", unknown.Select(e => $"`{e}`"))}."],
            "bpb: bits per UTF-8 byte of held-out text (lower is better; comparable across tokenizers). Validation bpb is measured at the end of each run; the compute-optimal run of a method at a budget is the one with the lowest validation bpb, and test text is scored only for the final table.",
            "Expert usage: the fraction of a layer's N experts that receive any gate weight over the validation text; unevenness: KL(z ‖ uniform) in nats of the experts' share z of the gate weight (0 = perfectly even, log N = all on one expert). Both are means over a model's PEER (or PKM) layers.",
            "a ± b: mean and sample standard deviation over seeds, where a point has two seeds or more (the seeds column says how many).",
        ]);
    }

    static string Quote(string argument) => argument.Any(char.IsWhiteSpace) ? $"'{argument}'" : argument;

    /// <summary>A section's heading, then either "not yet run" or what was read and its content.</summary>
    static void Section(MarkdownWriter markdown, Dictionary<string, List<ResultLine>> experiments, string title, string experiment, Action content)
    {
        markdown.Heading(2, title);
        if (!experiments.TryGetValue(experiment, out var lines))
        {
            markdown.Paragraph($"Not yet run: no results of experiment `{experiment}` were read.");
            return;
        }
        Coverage(markdown, experiment, lines);
        content();
    }

    /// <summary>What was read of an experiment and, where its spec lies next to its results file, which runs are still missing.</summary>
    static void Coverage(MarkdownWriter markdown, string experiment, List<ResultLine> lines)
    {
        var results = lines.Select(l => l.Result).ToList();
        var methods = results.GroupBy(r => r.Method).OrderBy(g => ResultPoint.MethodOrder(g.Key)).ThenBy(g => g.Key, StringComparer.Ordinal)
                             .Select(g => $"{g.Key} ({g.Count()})");
        markdown.Paragraph($"Read {results.Count} runs from {string.Join(", ", lines.Select(l => l.File).Distinct())}: " +
                           $"budgets {string.Join(", ", results.Select(r => r.Budget).Distinct().Order().Select(ReportFormat.Budget))} FLOPs; " +
                           $"methods {string.Join(", ", methods)}; seeds {string.Join(", ", results.Select(r => r.Seed).Distinct().Order())}.");

        var specPath = SpecPath(lines[0].File, experiment);
        if (!File.Exists(specPath))
        {
            markdown.Paragraph($"No spec at {specPath}, so the runs still to come cannot be listed.");
            return;
        }
        var spec = SweepSpec.Load(specPath);
        if (!string.IsNullOrWhiteSpace(spec.Description)) markdown.Paragraph($"The question ({specPath}): {spec.Description}");
        var done = results.Select(r => (r.Run, r.Budget, r.Seed)).ToHashSet();
        var planned = Sweep.Plan(spec);
        planned = [.. planned, .. Sweep.Confirmations(spec, results.GroupBy(r => r.Id).ToDictionary(g => g.Key, g => g.First()))];
        var expected = planned.Select(item => (item.Run.Name, item.Budget, item.Seed)).ToList();
        var missing = expected.Where(e => !done.Contains(e)).ToList();
        const int listed = 12;
        var reused = results.Where(r => r.ReusedFrom is not null).Select(r => $"{r.Id} (from {r.ReusedFrom})").ToList();
        if (reused.Count > 0)
            markdown.Paragraph($"Copied from another experiment that trained the same model at the same budget, seed and data: {string.Join(", ", reused)}.");
        markdown.Paragraph(missing.Count == 0
            ? $"All {expected.Count} runs of the spec are here."
            : $"Not yet run: {missing.Count} of the spec's {expected.Count} runs: " +
              string.Join(", ", missing.Take(listed).Select(m => $"{m.Name} at {ReportFormat.Budget(m.Budget)} (seed {m.Seed})")) +
              (missing.Count > listed ? $" and {missing.Count - listed} more." : ".") +
              (spec.ConfirmationSeeds.Length > 0 && planned.All(item => spec.Seeds.Contains(item.Seed))
                  ? $" Once the grid is complete, seeds {string.Join(", ", spec.ConfirmationSeeds)} follow at each method's compute-optimal run per budget." : ""));
    }

    /// <summary>The idle-machine timings of an experiment's runs, from experiments/NAME.timings.jsonl beside each of its results files.</summary>
    static IReadOnlyDictionary<string, RunTiming> Timings(List<ResultLine> lines, string experiment) =>
        lines.Select(l => l.File).Distinct().SelectMany(file => SweepTiming.Read(SweepTiming.PathBeside(file, experiment)).Values)
             .GroupBy(t => t.Run).ToDictionary(g => g.Key, g => g.Last());

    /// <summary>experiments/NAME.json beside experiments/NAME.results.jsonl, the sweep's layout.</summary>
    static string SpecPath(string resultsFile, string experiment) => Path.Combine(Path.GetDirectoryName(resultsFile) ?? "", experiment + ".json");

    /// <summary>One table per experiment with everything a results line says about its run.</summary>
    static void AllRuns(MarkdownWriter markdown, Dictionary<string, IReadOnlyList<ResultPoint>> points)
    {
        markdown.Heading(2, "Every run read");
        if (points.Count == 0)
        {
            markdown.Paragraph("No results were read.");
            return;
        }
        markdown.Paragraph("Wall seconds are training time as each run recorded it (validations and checkpoints excluded, summed over interruptions).");
        foreach (var (experiment, experimentPoints) in points.OrderBy(p => Array.IndexOf(WithSection, p.Key) is var i and >= 0 ? i : WithSection.Length).ThenBy(p => p.Key, StringComparer.Ordinal))
        {
            markdown.Heading(3, $"`{experiment}`");
            var domains = DomainColumns.Of(experimentPoints);
            markdown.Table(
                ["run", "method", "budget", "seed", "parameters", "active / token", "forward FLOPs / token", "steps", "tokens", "training FLOPs", "wall s", "tokens / s", "validation bpb", "test bpb", .. domains.Header, "usage", "finished (UTC)"],
                "lllrrrrrrrrrrr" + domains.Align + "rl",
                experimentPoints.SelectMany(p => p.Seeds).Select(r => (IReadOnlyList<string>)[
                    r.Run, r.Method, ReportFormat.Budget(r.Budget), r.Seed.ToString(), ReportFormat.Si(r.Parameters), ReportFormat.Si(r.ActiveParameters),
                    ReportFormat.Si(r.ForwardFlopsPerToken), ReportFormat.Number(r.Steps, "N0"), ReportFormat.Si(r.Tokens), ReportFormat.Number(r.TrainingFlops, "0.00e0"),
                    ReportFormat.Number(r.WallSeconds, "N0"), ReportFormat.Number(r.TokensPerSecond, "N0"), ReportFormat.Number(r.Validation.BitsPerByte, "F3"),
                    ReportFormat.Number(r.Test?.BitsPerByte ?? double.NaN, "F3"), .. domains.Cells(r), ReportFormat.Percent(ResultPoint.Usage(r.Validation.Layers)),
                    ReportFormat.Time(r.FinishedAt)]));
        }
    }
}
