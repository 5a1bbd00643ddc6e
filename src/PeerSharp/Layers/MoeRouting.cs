using System.Text.Json.Serialization;

namespace PeerSharp.Layers;

/// <summary>How a mixture-of-experts layer matches tokens and experts.</summary>
public enum MoeRouting
{
    /// <summary>Expert-choice routing (Zhou et al. 2022): each expert takes its best tokens. The paper's MoE.</summary>
    [JsonStringEnumMemberName("expert-choice")]
    ExpertChoice,
    /// <summary>Token-choice top-k routing (Shazeer et al. 2017, GShard, Switch): each token takes its best experts.</summary>
    [JsonStringEnumMemberName("token-choice")]
    TokenChoice,
}
