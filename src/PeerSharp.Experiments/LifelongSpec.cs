using System.Text.Json.Nodes;
using PeerSharp.Config;
using PeerSharp.Growth;

namespace PeerSharp.Experiments;

/// <summary>One arm of phase 2: a phase-1 model, grown or not, trained on domain B with some parts frozen.</summary>
public sealed record LifelongArm
{
    /// <summary>Unique name among the spec's runs and arms, such as "peer-grown-frozen".</summary>
    public required string Name { get; init; }

    /// <summary>
    /// The run it continues: a phase-1 run (<see cref="LifelongSpec.Phase1"/>), and the arm trains phase 2 on domain B;
    /// or a phase-2 arm, and it trains phase 3 on domain C (<see cref="LifelongSpec.DomainC"/>).
    /// </summary>
    public required string From { get; init; }

    /// <summary>
    /// Forward transfer's reference: the <see cref="From"/> phase-1 run's model trained on B alone, from a fresh
    /// initialisation with the arm's seed, for the phase-2 steps with the phase-2 settings. The report compares
    /// every arm that continues that run with it (LifelongReport). Nothing may be grown, frozen or pulled.
    /// </summary>
    public bool FromScratch { get; init; }

    /// <summary>Whether the phase-1 model is grown (<see cref="LifelongSpec.Growth"/>) before phase 2.</summary>
    public bool Grow { get; init; }

    /// <summary>
    /// The dense baseline of growth: grow every dense feed-forward to this multiplier of d_model hidden units
    /// (<see cref="HiddenGrowth"/>) before phase 2; null: no such growth. Freeze the old units with
    /// <see cref="FreezeConfig.OldHiddenUnits"/>.
    /// </summary>
    public int? GrowHidden { get; init; }

    /// <summary>What stays untouched in phase 2.</summary>
    public FreezeConfig Freeze { get; init; } = new();

    /// <summary>
    /// JSON overlay on this arm's phase-2 training settings, over the spec's <see cref="LifelongSpec.Phase2"/>: its own
    /// learning rate, or a continual-learning baseline, experience replay of A (<see cref="TrainConfig.ReplayFraction"/>,
    /// <see cref="TrainConfig.ReplayTokens"/>: the replay text is domain A's training text) or an L2 pull toward the
    /// phase-2 start (<see cref="TrainConfig.AnchorPull"/>).
    /// </summary>
    public JsonObject Train { get; init; } = [];

    /// <summary>How this arm grows, where it differs from the spec's <see cref="LifelongSpec.Growth"/> (null: the spec's).</summary>
    public GrowthOptions? Growth { get; init; }
}

/// <summary>
/// The lifelong-learning experiment (docs/LIFELONG.md): phase 1 trains each model of <see cref="Phase1"/> on
/// domain A; phase 2 continues each arm for the same number of steps on domain B, scoring A's validation
/// (forgetting) and B's (learning) every <see cref="EvalInterval"/> steps. Written as JSON (experiments/lifelong.json).
/// </summary>
public sealed record LifelongSpec
{
    /// <summary>The experiment's name; results and run folders are keyed by it.</summary>
    public required string Name { get; init; }

    /// <summary>What the experiment asks, for the report.</summary>
    public string Description { get; init; } = "";

    /// <summary>The preset the base config starts from.</summary>
    public string Preset { get; init; } = Presets.Default;

    /// <summary>JSON overlay on the preset shared by every run.</summary>
    public JsonObject Base { get; init; } = [];

    /// <summary>Domain A, trained in phase 1 (null paths: the bundled books); paths relative to the spec's folder.</summary>
    public SweepData DomainA { get; init; } = new();

    /// <summary>Domain B, trained in phase 2.</summary>
    public SweepData DomainB { get; init; } = new();

    /// <summary>Domain C, trained in phase 3 by the arms that continue a phase-2 arm; null: no phase 3.</summary>
    public SweepData? DomainC { get; init; }

    /// <summary>Steps of phase 1.</summary>
    public int Phase1Steps { get; init; } = 1000;

    /// <summary>Steps of phase 2, the same in every arm.</summary>
    public int Phase2Steps { get; init; } = 500;

    /// <summary>Steps of phase 3, the same in every arm that has one.</summary>
    public int Phase3Steps { get; init; } = 500;

    /// <summary>JSON overlay on the training settings of phase 2 and phase 3 (their learning rate, say).</summary>
    public JsonObject Phase2 { get; init; } = [];

    /// <summary>Validate (both domains in phase 2) every this many steps.</summary>
    public int EvalInterval { get; init; } = 100;

    /// <summary>How the grown arms grow.</summary>
    public GrowthOptions? Growth { get; init; }

    /// <summary>Seeds; every run once per seed.</summary>
    public long[] Seeds { get; init; } = [1337];

    /// <summary>The phase-1 models (a method and a config overlay each).</summary>
    public SweepRun[] Phase1 { get; init; } = [];

    /// <summary>The growth of an arm: its own settings or the spec's, with the domains' texts as the placement's where it places new sub-keys at queries.</summary>
    public GrowthOptions GrowthOf(LifelongArm arm, string specFolder)
    {
        var growth = arm.Growth ?? Growth!;
        return growth.Placement != KeyPlacement.Queries ? growth : growth with
        {
            NewDomain = growth.NewDomain ?? DomainB.Resolved(specFolder).Train,
            OldDomain = growth.OldDomain ?? DomainA.Resolved(specFolder).Train ?? Data.BundledCorpus.TrainPath,
        };
    }

    /// <summary>The arms of phase 2 and phase 3.</summary>
    public LifelongArm[] Arms { get; init; } = [];

    /// <summary>Whether <paramref name="arm"/> trains phase 3 on domain C: it continues a phase-2 arm.</summary>
    public bool InPhase3(LifelongArm arm) => Arms.Any(a => a.Name == arm.From);

    /// <summary>Reads a spec file; a <see cref="PeerSharpException"/> names what is wrong.</summary>
    public static LifelongSpec Load(string path)
    {
        var spec = SweepSpec.Read<LifelongSpec>(path, "lifelong spec");
        spec.Validate(path);
        return spec;
    }

    void Validate(string path)
    {
        SweepSpec.CheckPlainName(Name, $"lifelong spec '{path}'", "name");
        foreach (var run in Phase1) SweepSpec.CheckPlainName(run.Name, $"lifelong spec '{path}'", "phase-1 run name");
        foreach (var arm in Arms) SweepSpec.CheckPlainName(arm.Name, $"lifelong spec '{path}'", "arm name");
        if (Phase1Steps < 1 || Phase2Steps < 1) throw new PeerSharpException($"lifelong spec '{path}': phase steps {Phase1Steps} and {Phase2Steps} must be positive");
        if (EvalInterval < 1) throw new PeerSharpException($"lifelong spec '{path}': eval interval {EvalInterval} must be positive");
        if (Seeds.Length == 0) throw new PeerSharpException($"lifelong spec '{path}' has no seeds");
        DomainA.Validate($"lifelong spec '{path}' domain A");
        DomainB.Validate($"lifelong spec '{path}' domain B");
        if (Phase1.Length == 0 || Arms.Length == 0) throw new PeerSharpException($"lifelong spec '{path}' needs phase-1 runs and phase-2 arms");
        var duplicate = Phase1.Select(r => r.Name).Concat(Arms.Select(a => a.Name)).GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new PeerSharpException($"lifelong spec '{path}' names '{duplicate.Key}' twice");
        if (Phase3Steps < 1) throw new PeerSharpException($"lifelong spec '{path}': phase-3 steps {Phase3Steps} must be positive");
        DomainC?.Validate($"lifelong spec '{path}' domain C");
        foreach (var arm in Arms)
        {
            if (InPhase3(arm))
            {
                var from = Arms.Single(a => a.Name == arm.From);
                if (DomainC is null) throw new PeerSharpException($"lifelong spec '{path}': arm '{arm.Name}' continues arm '{arm.From}' on domain C, but the spec has no domainC");
                if (InPhase3(from)) throw new PeerSharpException($"lifelong spec '{path}': arm '{arm.Name}' continues '{arm.From}', itself a phase-3 arm; expected a phase-2 arm (there is no phase 4)");
                if (arm.Grow || arm.GrowHidden is not null) throw new PeerSharpException($"lifelong spec '{path}': phase-3 arm '{arm.Name}' grows; growth before phase 3 is not built (grow before phase 2)");
                continue;
            }
            if (Phase1.All(r => r.Name != arm.From))
                throw new PeerSharpException($"lifelong spec '{path}': arm '{arm.Name}' continues '{arm.From}', which is neither a phase-1 run nor an arm");
            if (arm.FromScratch && (arm.Grow || arm.GrowHidden is not null || arm.Freeze.Any))
                throw new PeerSharpException($"lifelong spec '{path}': arm '{arm.Name}' trains from scratch but grows or freezes; a fresh model has nothing to keep");
            if (arm.Grow && arm.GrowHidden is not null) throw new PeerSharpException($"lifelong spec '{path}': arm '{arm.Name}' grows both its experts and its hidden units; expected one");
            if (arm.Grow && (arm.Growth ?? Growth) is null) throw new PeerSharpException($"lifelong spec '{path}': arm '{arm.Name}' grows but neither it nor the spec has growth settings");
        }
    }
}
