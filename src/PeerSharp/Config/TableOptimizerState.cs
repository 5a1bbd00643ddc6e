using System.Text.Json.Serialization;

namespace PeerSharp.Config;

/// <summary>
/// What the optimizer of the expert tables (PEER's down.weight and up.weight, PKM's values.weight) keeps per row
/// (docs/SPARSE_UPDATES.md, "Lean table state"). Full AdamW keeps two moments as large as the table; the row-wise
/// choices keep one second-moment scalar per row (the running mean of the row's squared gradient entries, as
/// row-wise Adagrad and row-wise Adam do for large embedding tables) and a first moment that is full, bf16 or absent.
/// </summary>
public enum TableOptimizerState
{
    /// <summary>AdamW: first and second moments [N, d] in float32 (tables + 2 × tables of state).</summary>
    [JsonStringEnumMemberName("full")]
    Full,
    /// <summary>A float32 first moment [N, d] and a second moment per row [N] (tables + 1 × tables).</summary>
    [JsonStringEnumMemberName("row-wise")]
    RowWise,
    /// <summary>A bfloat16 first moment [N, d] and a second moment per row [N] (tables + ½ × tables).</summary>
    [JsonStringEnumMemberName("row-wise-bf16")]
    RowWiseBf16,
    /// <summary>No first moment, a second moment per row [N]: the step is g / √v̂ (tables + a vector of N).</summary>
    [JsonStringEnumMemberName("row-wise-no-momentum")]
    RowWiseNoMomentum,
}
