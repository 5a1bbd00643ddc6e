using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Evaluation;

/// <summary>
/// The warning `peer train` prints when a PEER layer uses few of its experts early in training, the retrieval collapse
/// of DESIGN.md "Keeping experts alive": it names the setting that keeps the experts in use.
/// </summary>
public static class UsageWarning
{
    /// <summary>Usage below this fraction warns.</summary>
    public const double Threshold = 0.5;

    /// <summary>From this many experts (512²) the warning names the large-pool setting measured at 1024².</summary>
    public const long LargePool = 512L * 512;

    /// <summary>
    /// The warning for a validation at <paramref name="step"/> of <paramref name="steps"/>, or null: only in the first
    /// half of training (later a warning could no longer change the run), for each PEER layer under <see cref="Threshold"/>.
    /// </summary>
    public static string? For(ModelConfig model, long step, int steps, EvaluationResult validation)
    {
        if (step > steps / 2) return null;
        var kinds = model.FeedForwardKinds();
        var low = validation.Layers.Where(l => l.Block < kinds.Length && kinds[l.Block] == FeedForwardKind.Peer && l.Usage < Threshold).ToList();
        if (low.Count == 0) return null;
        var what = string.Join(", ", low.Select(l => $"block {l.Block} uses {100 * l.Usage:F1}% of its {l.ExpertCount:N0} experts"));
        var peer = model.PeerOptions;
        // What was measured (docs/EXPERIMENTS.md sections 5 and 6): at N = 1024² the default weight 0.01 kept a fifth
        // of the experts in use and weight 0.1 with revival every 100 steps over half, at the same bits per byte; at
        // 128² weight 0.1 kept nearly all but cost bits per byte; 0.3 was worse than 0.1 at 1024².
        var fix = peer.Balance == RetrievalBalance.None
            ? "the joint balance term keeps them in use: \"model\": {\"peer\": {\"balance\": \"joint\"}} in a --config file"
            : peer.Balance == RetrievalBalance.Joint && peer.RevivalInterval == 0 && peer.BalanceWeight < 0.1 && low.Max(l => l.ExpertCount) >= LargePool
                ? $"for a pool this large, the joint term at weight 0.1 with dead-key revival spreads retrieval further than weight {peer.BalanceWeight}: \"model\": {{\"peer\": {{\"balanceWeight\": 0.1, \"revivalInterval\": 100}}}}, or fewer experts suit this much data"
                : peer.BalanceWeight < 0.1
                    ? $"a larger balance weight than {peer.BalanceWeight} spreads retrieval further, at a cost in bits per byte (\"model\": {{\"peer\": {{\"balanceWeight\": …}}}}), or fewer experts suit this much data"
                    : "fewer experts, or more training tokens per expert, suit this much data (weights above 0.1 were worse, not better)";
        return $"warning: at step {step}, {what}; {fix} (docs/DESIGN.md, \"Keeping experts alive\").";
    }
}
