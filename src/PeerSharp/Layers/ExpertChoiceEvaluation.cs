using System.Text.Json.Serialization;

namespace PeerSharp.Layers;

/// <summary>
/// How an expert-choice MoE routes in evaluation (docs/BASELINES.md, "Expert choice is not causal"). Training always
/// routes the whole batch as one group; these say what an evaluation's groups are, and so how much of a later token
/// a score may see.
/// </summary>
public enum ExpertChoiceEvaluation
{
    /// <summary>Each sequence is its own group: a token's output depends on the later tokens of its sequence, not on the other sequences. The default.</summary>
    [JsonStringEnumMemberName("sequence")]
    Sequence,
    /// <summary>Each forward's whole batch is one group, as in training (B·T tokens when evaluated with the training batch size): later tokens and other sequences both count.</summary>
    [JsonStringEnumMemberName("training-group")]
    TrainingGroup,
    /// <summary>
    /// Causal: token t is routed as if its sequence ended at t, so its output depends on tokens 0..t only. Expert e
    /// takes it when its score is among the C_t best of e's scores for tokens 0..t, C_t the capacity of a group of t + 1
    /// tokens (ties go to the earlier token).
    /// </summary>
    [JsonStringEnumMemberName("causal")]
    Causal,
}
