using System.Globalization;
using System.Text.Json.Nodes;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Growth;
using PeerSharp.Model;

namespace PeerSharp.Experiments;

/// <summary>
/// Runs a <see cref="LifelongSpec"/> with the sweep's machinery (<see cref="Sweep"/>: one results line per finished
/// run, finished runs skipped, an interrupted one resumed): phase 1 of each model on domain A, then each arm's phase
/// 2 on domain B from the phase-1 checkpoint, grown first (<see cref="ExpertGrowth"/>, once per model and seed) where
/// the arm asks, then the phase-3 arms on domain C from their phase-2 arm's end. Phase-2 runs score A's validation
/// beside B's at every validation and where they start; phase-3 runs score A's and B's beside C's.
/// </summary>
public static class Lifelong
{
    /// <summary>Id of a phase-1 run ("peer/A#1337") and of a phase-2 arm ("peer-grown/B#1337").</summary>
    public static string Phase1Id(string run, long seed) => $"{run}/A#{seed}";

    /// <inheritdoc cref="Phase1Id"/>
    public static string Phase2Id(string arm, long seed) => $"{arm}/B#{seed}";

    /// <summary>Id of a phase-3 arm ("peer-then-c/C#1337").</summary>
    public static string Phase3Id(string arm, long seed) => $"{arm}/C#{seed}";

    /// <summary>
    /// The items in order: every phase-1 run at every seed, then every phase-2 arm at every seed, then every phase-3
    /// arm (one that continues a phase-2 arm on domain C) at every seed.
    /// </summary>
    public static IReadOnlyList<SweepItem> Plan(LifelongSpec spec, string specFolder, string runsFolder)
    {
        var basis = RunConfig.Overlay(Presets.Get(spec.Preset), spec.Base, $"lifelong '{spec.Name}' base");
        var items = new List<SweepItem>();
        var phase1 = new Dictionary<(string, long), SweepItem>();
        foreach (var run in spec.Phase1)
            foreach (var seed in spec.Seeds)
            {
                var config = RunConfig.Overlay(basis, run.Config, $"lifelong '{spec.Name}' run '{run.Name}'");
                config = config with { Train = Settle(config.Train, seed, spec.Phase1Steps, spec.EvalInterval) };
                var item = Item(Phase1Id(run.Name, seed), run, seed, config, startStep: 0);
                items.Add(item);
                phase1[(run.Name, seed)] = item;
            }
        var phase2 = new Dictionary<(string, long), SweepItem>();
        foreach (var arm in spec.Arms.Where(a => !spec.InPhase3(a)))
            foreach (var seed in spec.Seeds)
            {
                var from = phase1[(arm.From, seed)];
                if (arm.FromScratch)
                {
                    phase2[(arm.Name, seed)] = Scratch(spec, specFolder, arm, from, seed);
                    items.Add(phase2[(arm.Name, seed)]);
                    continue;
                }
                var start = Path.Combine(runsFolder, spec.Name, from.FolderName, "checkpoint.json");
                var model = from.Config;
                if (arm.Grow)
                {
                    var growth = spec.GrowthOf(arm, specFolder);
                    model = ExpertGrowth.GrownConfig(model, growth.SubKeyCount);
                    start = Path.Combine(GrownFolder(growth, runsFolder, spec, from), "checkpoint.json");
                }
                if (arm.GrowHidden is { } multiplier)
                {
                    model = HiddenGrowth.GrownConfig(model, multiplier);
                    start = Path.Combine(HiddenGrownFolder(multiplier, runsFolder, spec, from), "checkpoint.json");
                }
                var config = Phase2Config(spec, arm, model, seed, spec.Phase1Steps + spec.Phase2Steps);
                var run = new SweepRun { Name = arm.Name, Method = arm.Name };
                var domainA = spec.DomainA.Resolved(specFolder);
                var item = Item(Phase2Id(arm.Name, seed), run, seed, config, spec.Phase1Steps) with
                {
                    StartFrom = start,
                    ContinuesFrom = from.Id,
                    AlsoScored = [("A", domainA.Validation)],
                    ReplayFrom = ReplayText(config, domainA),
                    AnchorFrom = config.Train.AnchorPull > 0 ? start : null,   // where phase 2 starts: A's model
                };
                items.Add(item);
                phase2[(arm.Name, seed)] = item;
            }
        foreach (var arm in spec.Arms.Where(spec.InPhase3))
            foreach (var seed in spec.Seeds)
            {
                var from = phase2[(arm.From, seed)];
                var start = Path.Combine(runsFolder, spec.Name, from.FolderName, "checkpoint.json");
                // The phase-1 run's settings, not the phase-2 arm's: what that arm did in phase 2 (a replay, a pull) is not inherited.
                var first = phase1[(spec.Arms.Single(a => a.Name == arm.From).From, seed)].Config with { Model = from.Config.Model };
                var config = Phase2Config(spec, arm, first, seed, spec.Phase1Steps + spec.Phase2Steps + spec.Phase3Steps);
                if (config.Train.ReplayFraction > 0)
                    throw new PeerSharpException($"lifelong '{spec.Name}': phase-3 arm '{arm.Name}' replays; replay in phase 3 is not built (it would need both earlier domains)");
                var run = new SweepRun { Name = arm.Name, Method = arm.Name };
                items.Add(Item(Phase3Id(arm.Name, seed), run, seed, config, spec.Phase1Steps + spec.Phase2Steps) with
                {
                    StartFrom = start,
                    ContinuesFrom = from.Id,
                    AlsoScored = [("A", spec.DomainA.Resolved(specFolder).Validation), ("B", spec.DomainB.Resolved(specFolder).Validation)],
                    AnchorFrom = config.Train.AnchorPull > 0 ? start : null,   // where phase 3 starts: the model after B
                });
            }
        return items;
    }

    /// <summary>
    /// A <see cref="LifelongArm.FromScratch"/> arm: the phase-1 run's model, freshly initialised, trained on B for the
    /// phase-2 steps with the phase-2 settings (its warm-up included, since it starts from nothing), A scored beside B.
    /// </summary>
    static SweepItem Scratch(LifelongSpec spec, string specFolder, LifelongArm arm, SweepItem from, long seed)
    {
        var config = Phase2Config(spec, arm, from.Config, seed, spec.Phase2Steps);
        if (config.Train.AnchorPull > 0)
            throw new PeerSharpException($"lifelong '{spec.Name}': arm '{arm.Name}' trains from scratch with an L2 pull; a fresh model has no earlier weights to be pulled toward");
        var domainA = spec.DomainA.Resolved(specFolder);
        return Item(Phase2Id(arm.Name, seed), new SweepRun { Name = arm.Name, Method = arm.Name }, seed, config, startStep: 0) with
        {
            AlsoScored = [("A", domainA.Validation)],
            ReplayFrom = ReplayText(config, domainA),
        };
    }

    /// <summary>What an arm that replays (<see cref="TrainConfig.ReplayFraction"/>) replays: domain A's training text; null when it does not.</summary>
    static string? ReplayText(RunConfig config, SweepData domainA) =>
        config.Train.ReplayFraction > 0 ? domainA.Train ?? Data.BundledCorpus.TrainPath : null;

    /// <summary>
    /// Runs every item of <paramref name="spec"/> that <paramref name="resultsPath"/> lacks, growing the phase-1
    /// checkpoints the grown arms start from when they are not there yet. A finished run whose checkpoint a later arm
    /// needs but whose run folder is gone (a fresh machine with the committed results file) is trained again into its
    /// folder, and must reproduce its recorded validation score bit for bit, as a resumed run does (DESIGN.md
    /// "Conventions"); its line is not appended twice. Stops after the current step when cancelled.
    /// </summary>
    public static IReadOnlyList<SweepResult> Run(LifelongSpec spec, string specFolder, string resultsPath, string runsFolder,
                                                 ISweepObserver? observer = null, CancellationToken cancellation = default)
    {
        var items = Plan(spec, specFolder, runsFolder);
        var byId = items.ToDictionary(i => i.Id);
        var phase1 = items.Where(i => i.Id == Phase1Id(i.Run.Name, i.Seed)).ToDictionary(i => (i.Run.Name, i.Seed));
        string FolderOf(SweepItem item) => Path.Combine(runsFolder, spec.Name, item.FolderName);
        bool HasCheckpoint(SweepItem item) => File.Exists(Checkpoint.SidecarPath(Checkpoint.PathInFolder(FolderOf(item))));
        // Its last step's checkpoint, not one a cancelled run left part-way (which the next call resumes).
        bool Finished(SweepItem item) => HasCheckpoint(item) && Checkpoint.Read(Checkpoint.PathInFolder(FolderOf(item))).Step == item.Config.Train.Steps;

        SweepResult? Train(SweepItem item, Action<long> started)
        {
            var arm = spec.Arms.SingleOrDefault(a => a.Name == item.Run.Name);
            var domain = (arm is null ? spec.DomainA : spec.InPhase3(arm) ? spec.DomainC! : spec.DomainB).Resolved(specFolder);
            // The start is read again after training too (a grown arm's routing, an anchored arm's pull), so an arm
            // resumed from its own checkpoint needs it as well.
            if (item.StartFrom is not null && (!HasCheckpoint(item) || !File.Exists(item.StartFrom)) && !Prepare(spec, specFolder, runsFolder, item, phase1, byId, Retrain))
                return null;
            var result = Sweep.RunItem(spec.Name, item, FolderOf(item), domain, null, started, observer, cancellation);
            if (result is null || arm is null) return result;
            result = result with { ContinuesFrom = item.ContinuesFrom, ScratchOf = arm.FromScratch ? Phase1Id(arm.From, item.Seed) : null };
            return !arm.Grow ? result : result with { Routing = Routing(spec, specFolder, item, phase1[(arm.From, item.Seed)].Config.Model, FolderOf(item)) };
        }

        // A finished run trained again for its checkpoint alone; false when cancelled.
        bool Retrain(SweepItem finished)
        {
            if (Finished(finished)) return true;
            if (!Sweep.ReadResults(resultsPath).TryGetValue(finished.Id, out var recorded))
                throw new PeerSharpException($"checkpoint of {finished.Id} is missing, and the results file has no line for it either");
            // Training is bit-identical only within one CPU family (DESIGN.md "Conventions", reproducibility across machines).
            var here = MachineInfo.Current().Numerics;
            if (recorded.Machine is { } there && there != here)
                throw new PeerSharpException($"checkpoint of {finished.Id} is gone, and it was trained on {there}, not on this machine ({here}), where it would not train bit-identically: " +
                                             "run the arms that continue it where it was trained, or remove its line and theirs to train them all here");
            observer?.Retraining(finished, $"a later arm starts from its checkpoint, which is not in its run folder; its recorded validation is {recorded.Validation.BitsPerByte:R} bits per byte");
            var again = Train(finished, _ => { });
            if (again is null) return false;
            if (again.Validation.BitsPerByte != recorded.Validation.BitsPerByte)
            {
                // Moved aside, so that a rerun trains it again and refuses again rather than taking it for the recorded run.
                var folder = FolderOf(finished);
                if (Directory.Exists(folder + ".mismatch")) Directory.Delete(folder + ".mismatch", recursive: true);
                Directory.Move(folder, folder + ".mismatch");
                throw new PeerSharpException($"{finished.Id} trained again reaches {again.Validation.BitsPerByte:R} bits per byte, not the recorded {recorded.Validation.BitsPerByte:R} (its run is in {folder}.mismatch): " +
                                             $"the arms after it would continue another model than the results file describes; remove its line and those of the arms that continue it to train them all again");
            }
            return true;
        }

        // The items that would first train a finished run again (its run folder gone) go last, in the plan's order
        // otherwise, so that a run that cannot be reproduced here stops only the arms that continue it.
        var done = Sweep.ReadResults(resultsPath);
        bool NeedsRetrain(SweepItem item) =>
            item.StartFrom is { } start && !File.Exists(start) && item.ContinuesFrom is { } from && done.ContainsKey(from) && !Finished(byId[from]);
        var ordered = items.OrderBy(i => !done.ContainsKey(i.Id) && NeedsRetrain(i)).ToList();   // a stable sort
        return Sweep.RunAll(ordered, resultsPath, observer, cancellation, Train);
    }

    /// <summary>
    /// Where each domain's validation tokens go in a grown arm, at growth and at the end of phase 2
    /// (<see cref="GrowthRouting.Measure"/> over the validation length of the run).
    /// </summary>
    static IReadOnlyList<RoutingScore> Routing(LifelongSpec spec, string specFolder, SweepItem item, ModelConfig before, string folder)
    {
        var scores = new List<RoutingScore>();
        foreach (var (when, checkpoint) in new[] { ("grown", item.StartFrom!), ("end", Checkpoint.PathInFolder(folder)) })
        {
            var (model, info) = Checkpoint.LoadModel(checkpoint);
            using var _ = model;
            foreach (var (text, path) in new[] { ("A", spec.DomainA.Resolved(specFolder).Validation), ("B", spec.DomainB.Resolved(specFolder).Validation) })
            {
                using var corpus = Data.TokenCorpus.Open(path ?? Data.BundledCorpus.ValidationPath, info.Config.Model.Tokenizer);
                scores.Add(new RoutingScore(text, when, GrowthRouting.Measure(model, before, corpus, item.Config.Train.BatchSize, item.Config.Train.EvalTokens)));
            }
        }
        return scores;
    }

    /// <summary>
    /// Makes sure a later-phase item's start checkpoint exists: the run it continues (trained again by
    /// <paramref name="retrain"/> where its folder is gone), grown if the arm grows. False when cancelled.
    /// </summary>
    static bool Prepare(LifelongSpec spec, string specFolder, string runsFolder, SweepItem item, Dictionary<(string, long), SweepItem> phase1,
                        Dictionary<string, SweepItem> byId, Func<SweepItem, bool> retrain)
    {
        var arm = spec.Arms.Single(a => a.Name == item.Run.Name);
        if (spec.InPhase3(arm))
            return retrain(byId[item.ContinuesFrom!]);   // the phase-2 arm before it, in the plan's order
        // A grown arm starts from its growth of the phase-1 checkpoint: where that is there, phase 1 is not needed.
        if ((arm.Grow || arm.GrowHidden is not null) && File.Exists(item.StartFrom)) return true;
        var from = phase1[(arm.From, item.Seed)];
        if (!retrain(from)) return false;
        var source = Path.Combine(runsFolder, spec.Name, from.FolderName, "checkpoint.json");
        if (arm.Grow)
        {
            var growth = spec.GrowthOf(arm, specFolder);
            ExpertGrowth.GrowCheckpoint(source, GrownFolder(growth, runsFolder, spec, from), growth);
        }
        if (arm.GrowHidden is { } multiplier)
            HiddenGrowth.GrowCheckpoint(source, HiddenGrownFolder(multiplier, runsFolder, spec, from), multiplier);
        return true;
    }

    /// <summary>The folder of a phase-1 checkpoint grown one way: one per growth, shared by the arms that grow alike.</summary>
    static string GrownFolder(GrowthOptions growth, string runsFolder, LifelongSpec spec, SweepItem from) =>
        Path.Combine(runsFolder, spec.Name, $"{from.FolderName}_grown-{growth.SubKeyCount}" +
            (growth.Placement == KeyPlacement.Queries ? string.Create(CultureInfo.InvariantCulture, $"-queries-leak{growth.GateLeak}") : ""));

    /// <summary>
    /// The settings of an arm of a later phase: <paramref name="model"/> (the phase-1 run's settings with the model the
    /// arm continues, grown or not), the spec's phase-2 training overlay, then the arm's own, to <paramref name="steps"/> in all.
    /// </summary>
    static RunConfig Phase2Config(LifelongSpec spec, LifelongArm arm, RunConfig model, long seed, int steps)
    {
        var config = RunConfig.Overlay(model, new JsonObject { ["train"] = spec.Phase2.DeepClone() }, $"lifelong '{spec.Name}' phase 2");
        config = RunConfig.Overlay(config, new JsonObject { ["train"] = arm.Train.DeepClone() }, $"lifelong '{spec.Name}' arm '{arm.Name}'");
        return config with { Train = Settle(config.Train, seed, steps, spec.EvalInterval) with { Freeze = arm.Freeze } };
    }

    /// <summary>The folder of a phase-1 checkpoint whose dense feed-forwards grew to <paramref name="multiplier"/>·d_model hidden units.</summary>
    static string HiddenGrownFolder(int multiplier, string runsFolder, LifelongSpec spec, SweepItem from) =>
        Path.Combine(runsFolder, spec.Name, $"{from.FolderName}_hidden-x{multiplier}");

    static TrainConfig Settle(TrainConfig train, long seed, int steps, int evalInterval) =>
        train with { Steps = steps, Seed = seed, EvalInterval = evalInterval, CheckpointInterval = evalInterval };

    static SweepItem Item(string id, SweepRun run, long seed, RunConfig config, long startStep)
    {
        config.Validate();
        var flops = FlopCounter.Of(config.Model);
        var budget = flops.TrainingFlopsPerStep(config.Train.BatchSize) * (config.Train.Steps - startStep);
        return new SweepItem(id, run, budget, seed, config, flops) { StartStep = startStep };
    }
}
