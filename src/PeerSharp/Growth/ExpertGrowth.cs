using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Growth;

/// <summary>How <see cref="ExpertGrowth"/> grows a model's product-key layers.</summary>
public sealed record GrowthOptions
{
    /// <summary>n2, the new number of sub-keys per half of every PEER and PKM layer (N grows from n² to n2²).</summary>
    public required int SubKeyCount { get; init; }

    /// <summary>
    /// Scale of the new sub-keys relative to a fresh layer's (N(0, 2/d_key) per component). Their scores have this
    /// spread where a fresh key's have unit spread, so at a small scale they score near zero and rarely enter a
    /// top-k that the trained sub-keys hold (the output is then nearly preserved, but the new experts are rarely
    /// selected and learn slowly); at 1 they compete like fresh keys. DESIGN.md "Growth and freezing".
    /// </summary>
    public double NewKeyScale { get; init; } = 0.1;

    /// <summary>Where the new sub-keys go: random (<see cref="NewKeyScale"/>) or where the new domain's queries fall.</summary>
    public KeyPlacement Placement { get; init; } = KeyPlacement.Random;

    /// <summary>Text of the new domain, for <see cref="KeyPlacement.Queries"/>: the new sub-keys go where its queries fall.</summary>
    public string? NewDomain { get; init; }

    /// <summary>Text of the old domain, for <see cref="KeyPlacement.Queries"/>: none of its sampled queries may select a new sub-key.</summary>
    public string? OldDomain { get; init; }

    /// <summary>Tokens sampled from each domain's text for <see cref="KeyPlacement.Queries"/>.</summary>
    public long PlacementTokens { get; init; } = 65_536;

    /// <summary>
    /// Headroom of the gate (<see cref="KeyPlacement.Queries"/>): a new sub-key's score for every sampled old-domain
    /// query stays below (1 − margin) times that query's k-th best old score in the same half.
    /// </summary>
    public double GateMargin { get; init; } = 0.1;

    /// <summary>
    /// Fraction of the sampled old-domain queries that each new sub-key may reach (<see cref="KeyPlacement.Queries"/>):
    /// 0 protects them all; a small leak lets the new keys grow longer, so that more of the new domain's queries reach them.
    /// </summary>
    public double GateLeak { get; init; }

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting for a model.</summary>
    public void Validate(ModelConfig model)
    {
        var counts = FreezeConfig.SubKeyCounts(model);
        if (counts.Count == 0) throw new PeerSharpException("the checkpoint's model has no PEER or PKM layer to grow");
        foreach (var n in counts)
            if (SubKeyCount <= n || SubKeyCount > ProductKeyOptions.MaxSubKeyCount)
                throw new PeerSharpException($"new sub-key count {SubKeyCount} must be above the layers' n = {n} and at most {ProductKeyOptions.MaxSubKeyCount}");
        var kinds = model.FeedForwardKinds();
        if ((kinds.Contains(FeedForwardKind.Peer) && model.PeerOptions.HeadRotation) || (kinds.Contains(FeedForwardKind.Pkm) && model.PkmOptions.HeadRotation))
            throw new PeerSharpException("a model with head rotation cannot grow: the rotation of every head depends on n, so the old experts would move; grow a model without headRotation");
        if (!(NewKeyScale >= 0) || !double.IsFinite(NewKeyScale))
            throw new PeerSharpException($"new key scale {NewKeyScale} must be a finite number of at least 0");
        if (Placement != KeyPlacement.Queries) return;
        if (NewDomain is null || OldDomain is null)
            throw new PeerSharpException("placing new sub-keys at the new domain's queries needs the text of the new domain and of the old one");
        foreach (var path in new[] { NewDomain, OldDomain })
            if (!File.Exists(path)) throw new PeerSharpException($"domain text '{path}' does not exist");
        if ((kinds.Contains(FeedForwardKind.Peer) && model.PeerOptions.CosineKeys) || (kinds.Contains(FeedForwardKind.Pkm) && model.PkmOptions.CosineKeys))
            throw new PeerSharpException("new sub-keys can be placed at queries only with dot-product keys: cosine keys are normalised, so the gate's scaling would be undone; grow with random placement");
        if (PlacementTokens < model.ContextLength)
            throw new PeerSharpException($"placement tokens {PlacementTokens} must be at least one context of {model.ContextLength} tokens");
        if (!(GateMargin >= 0 && GateMargin < 1))
            throw new PeerSharpException($"gate margin {GateMargin} must be in [0, 1)");
        if (!(GateLeak >= 0 && GateLeak < 1))
            throw new PeerSharpException($"gate leak {GateLeak} must be in [0, 1)");
    }
}

/// <summary>
/// Grows every PEER and PKM layer of a model from n to n2 sub-keys per half (DESIGN.md "Growth and freezing"), for
/// lifelong learning: old expert (a, b) keeps its rows u, v (PKM: its value) under its new id a·n2 + b, and its
/// optimizer moments with them; old sub-keys keep their places 0…n−1. New experts get v = 0 (new PKM values 0), so
/// a selected new expert adds nothing, and u drawn as in a fresh layer; new sub-keys are fresh keys scaled by
/// <see cref="GrowthOptions.NewKeyScale"/> or placed where the new domain's queries fall
/// (<see cref="KeyPlacement.Queries"/>, <see cref="GrowthRouting"/>), their moments zero. Every other tensor and the optimizer step carry
/// over, so the grown model is an ordinary one: its checkpoint resumes, evaluates and generates like any other.
/// </summary>
public static class ExpertGrowth
{
    /// <summary>The config of a model grown to <paramref name="subKeyCount"/> sub-keys (PEER and PKM alike).</summary>
    public static RunConfig GrownConfig(RunConfig config, int subKeyCount) => config with
    {
        Model = config.Model with
        {
            PeerOptions = config.Model.PeerOptions with { SubKeyCount = subKeyCount },
            PkmOptions = config.Model.PkmOptions with { SubKeyCount = subKeyCount },
        },
    };

    /// <summary>
    /// A new model and optimizer, grown from <paramref name="model"/> and <paramref name="optimizer"/> of
    /// <paramref name="config"/>; the caller owns (and disposes) both pairs.
    /// </summary>
    public static (TransformerLM Model, IOptimizer Optimizer, RunConfig Config) Grow(TransformerLM model, IOptimizer optimizer, RunConfig config, GrowthOptions options)
    {
        options.Validate(config.Model);
        var grownConfig = GrownConfig(config, options.SubKeyCount);
        var placed = options.Placement == KeyPlacement.Queries ? GrowthRouting.PlaceNewSubKeys(model, config.Model, options) : null;
        var (grown, grownOptimizer) = TrainingSetup.Create(grownConfig);
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            // Per parameter name, how an old tensor maps into the grown one; anything else has the same shape and is copied.
            var plans = new Dictionary<string, Action<Tensor, Tensor>>();
            var prefixes = RetrievalLayers.Of(model).ToLookup(l => l.Layer, l => l.name);   // a layer may have several names
            foreach (var (layer, (old, grownLayer)) in Layers(model).Zip(Layers(grown)).Index())
            {
                void Plan(string name, Action<Tensor, Tensor> plan)
                {
                    foreach (var prefix in prefixes[old]) plans[RetrievalLayers.Prefixed(prefix, name)] = plan;
                }
                int n = (int)old.Retrieval.SubKeys.shape[1], n2 = options.SubKeyCount;
                var ids = arange((long)n * n);                                                  // old ids a·n + b
                var grownIds = ids.div(n, rounding_mode: RoundingMode.floor) * n2 + ids.remainder(n);   // a·n2 + b
                Plan("keys", (from, to) => to.narrow(1, 0, n).copy_(from));                   // [2, n, d_key/2] into [2, n2, d_key/2]
                Plan("revival_counts", (from, to) => to.narrow(1, 0, n).copy_(from));         // [2, n] into [2, n2]: new sub-keys start uncounted
                foreach (var (name, _) in old.Tables)
                    Plan(name, (from, to) => to.index_copy_(0, grownIds, from));               // rows [N, ...] to their new ids
                var newSubKeys = grownLayer.Retrieval.SubKeys.narrow(1, n, n2 - n);            // [2, n2 − n, d_key/2]
                if (placed is null) newSubKeys.mul_(options.NewKeyScale);
                else newSubKeys.copy_(placed[layer]);
                foreach (var (name, table) in grownLayer.Tables)
                    if (name != "down.weight") table.zero_();                                   // v = 0 (PKM values 0); u keeps its fresh draw
            }
            CopyInto(model, optimizer, grown, grownOptimizer, plans);                              // moments of new rows and keys start at zero
            return (grown, grownOptimizer, grownConfig);
        }
        catch
        {
            grownOptimizer.Dispose();
            grown.Dispose();
            throw;
        }
        finally
        {
            foreach (var keys in placed ?? []) keys.Dispose();
        }
    }

    /// <summary>
    /// Grows a checkpoint into <paramref name="folder"/> (FOLDER/checkpoint.json and its tensor files, and the
    /// resolved config.json), at the same step; returns the new sidecar's path.
    /// </summary>
    public static string GrowCheckpoint(string checkpoint, string folder, GrowthOptions options)
    {
        var (model, optimizer, info) = TrainingSetup.Resume(checkpoint);
        using var _ = model;
        using var __ = optimizer;
        options.Validate(info.Config.Model);
        var (grown, grownOptimizer, config) = Grow(model, optimizer, info.Config, options);
        using var ___ = grown;
        using var ____ = grownOptimizer;
        return SaveGrown(folder, grown, grownOptimizer, config, info);
    }

    /// <summary>Saves a grown model and optimizer into <paramref name="folder"/> at the step of <paramref name="from"/>, with its config.json; returns the sidecar's path.</summary>
    internal static string SaveGrown(string folder, TransformerLM grown, IOptimizer optimizer, RunConfig config, Checkpoint from)
    {
        config.Model.CheckFitsInMemory(training: true);
        var sidecar = Checkpoint.Save(Checkpoint.PathInFolder(folder), grown, optimizer,
                                      new Checkpoint { Config = config, Step = from.Step, TokensSeen = from.TokensSeen });
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
        return sidecar;
    }

    /// <summary>
    /// Copies a model and its optimizer state into the grown ones, each tensor through its parameter's plan in
    /// <paramref name="plans"/> or whole; the grown optimizer's moments start at zero wherever no old value lands.
    /// </summary>
    internal static void CopyInto(TransformerLM model, IOptimizer optimizer, TransformerLM grown, IOptimizer grownOptimizer, Dictionary<string, Action<Tensor, Tensor>> plans)
    {
        CopyAll(ModelTensors(model), ModelTensors(grown), plans, name => name);
        var grownState = grownOptimizer.StateDict();
        foreach (var tensor in grownState.Values) tensor.zero_();
        CopyAll(optimizer.StateDict(), grownState, plans, StateParameterName);
        grownOptimizer.LoadStateDict(grownState);
    }

    /// <summary>The PEER and PKM layers, in block order.</summary>
    static IEnumerable<IExpertRetrieval> Layers(TransformerLM model) => model.Blocks.Select(b => b.FeedForward).OfType<IExpertRetrieval>();

    static Dictionary<string, Tensor> ModelTensors(TransformerLM model) =>
        model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(model.named_buffers())
             .GroupBy(p => p.Item1).ToDictionary(g => g.Key, g => g.First().Item2);

    /// <summary>The parameter an optimizer tensor belongs to: "exp_avg.NAME" → NAME ("step" → itself).</summary>
    static string StateParameterName(string name)
    {
        var dot = name.IndexOf('.');
        return dot < 0 ? name : name[(dot + 1)..];
    }

    /// <summary>
    /// Copies every tensor of <paramref name="from"/> into its namesake in <paramref name="to"/>: through the plan of its
    /// parameter (<paramref name="parameterOf"/> its name) where there is one, else whole, which needs the same shape.
    /// </summary>
    static void CopyAll(IReadOnlyDictionary<string, Tensor> from, IReadOnlyDictionary<string, Tensor> to,
                        Dictionary<string, Action<Tensor, Tensor>> plans, Func<string, string> parameterOf)
    {
        foreach (var (name, destination) in to)
        {
            if (!from.TryGetValue(name, out var source))
                throw new InvalidOperationException($"growth: the grown model has '{name}', the old one does not");
            if (plans.TryGetValue(parameterOf(name), out var plan)) plan(source, destination);
            else if (source.shape.SequenceEqual(destination.shape)) destination.copy_(source);
            else throw new InvalidOperationException($"growth: '{name}' changed shape without a plan");
        }
    }
}
