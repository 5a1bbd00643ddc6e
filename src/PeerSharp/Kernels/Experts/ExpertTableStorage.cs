using System.Text.Json.Serialization;

namespace PeerSharp.Kernels;

/// <summary>
/// The element type PEER's expert tables u_i, v_i are stored in (docs/SPARSE_UPDATES.md, "bfloat16 tables"). The
/// kernels compute in float32 either way; bfloat16 halves the tables' memory and the bytes each selected expert
/// reads, at 8 bits of mantissa per weight.
/// </summary>
public enum ExpertTableStorage
{
    /// <summary>float32, the default.</summary>
    [JsonStringEnumMemberName("float32")]
    Float32,
    /// <summary>bfloat16: read widened to float32; updated in float32 and rounded back stochastically.</summary>
    [JsonStringEnumMemberName("bfloat16")]
    BFloat16,
}
