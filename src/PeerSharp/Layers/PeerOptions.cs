using System.Text.Json.Serialization;
using PeerSharp.Kernels;

namespace PeerSharp.Layers;

/// <summary>
/// Settings of one PEER layer (DESIGN.md "The algorithm"): N = n² single-neuron experts retrieved through two
/// sets of n sub-keys by h heads of k experts each.
/// </summary>
public sealed record PeerOptions : ProductKeyOptions
{
    /// <summary>σ of the single-neuron experts.</summary>
    public ExpertActivation Activation { get; init; } = ExpertActivation.Gelu;

    /// <summary>N, the number of experts.</summary>
    [JsonIgnore]
    public long ExpertCount => RowCount;

    private protected override string LayerName => "PEER";

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (!Enum.IsDefined(Activation)) throw new PeerSharpException($"PEER activation {(int)Activation} is not known; expected gelu or relu");
    }
}
