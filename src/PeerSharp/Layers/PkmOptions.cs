using System.Text.Json.Serialization;

namespace PeerSharp.Layers;

/// <summary>
/// Settings of one product-key memory layer (Lample et al. 2019), the paper's PKM baseline: N = n² memory
/// values retrieved through the same product keys as PEER. Lample et al. and the paper select k = 32 per head.
/// </summary>
public sealed record PkmOptions : ProductKeyOptions
{
    /// <summary>Options with the PKM paper's k = 32.</summary>
    public PkmOptions() => TopK = 32;

    /// <summary>N, the number of memory values.</summary>
    [JsonIgnore]
    public long ValueCount => RowCount;

    private protected override string LayerName => "PKM";
}
