using System.Text.Json.Serialization;
using PeerSharp.Kernels;

namespace PeerSharp.Layers;

/// <summary>
/// Settings of one PEER layer (DESIGN.md "The algorithm"): N = n² single-neuron experts retrieved through two
/// sets of n sub-keys by h heads of k experts each.
/// </summary>
public sealed record PeerOptions : ProductKeyOptions
{
    /// <summary>
    /// The defaults, with the joint balance term on (<see cref="RetrievalBalance.Joint"/>, weight 0.01): on the README
    /// model it kept 98% of the experts in use instead of 27% and lowered bits per byte (docs/EXPERIMENTS.md, sections 5
    /// and 6; DESIGN.md "Keeping experts alive"). <c>Balance = RetrievalBalance.None</c> is the paper's layer.
    /// </summary>
    public PeerOptions() => Balance = RetrievalBalance.Joint;

    /// <summary>σ of the single-neuron experts.</summary>
    public ExpertActivation Activation { get; init; } = ExpertActivation.Gelu;

    /// <summary>
    /// The element type of the expert tables u_i, v_i: float32, or bfloat16 for half their memory and row traffic
    /// (docs/SPARSE_UPDATES.md, "bfloat16 tables"). bfloat16 tables need the fused kernels, and training them the
    /// update in the backward (<c>TrainConfig.UpdateInBackward</c>).
    /// </summary>
    public ExpertTableStorage TableStorage { get; init; } = ExpertTableStorage.Float32;

    /// <summary>N, the number of experts.</summary>
    [JsonIgnore]
    public long ExpertCount => RowCount;

    private protected override string LayerName => "PEER";

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (!Enum.IsDefined(Activation)) throw new PeerSharpException($"PEER activation {(int)Activation} is not known; expected gelu or relu");
        if (!Enum.IsDefined(TableStorage)) throw new PeerSharpException($"PEER table storage {(int)TableStorage} is not known; expected float32 or bfloat16");
        if (TableStorage == ExpertTableStorage.BFloat16 && Kernel != KernelChoice.Fused)
            throw new PeerSharpException("PEER tables stored in bfloat16 need the fused kernels (kernel: fused); the plain tensor-op path computes in the tables' own dtype");
    }
}
