namespace PeerSharp.Kernels;

/// <summary>The expert non-linearity σ in e_i(x) = σ(u_i · x) · v_i. The paper allows "ReLU or GELU".</summary>
public enum ExpertActivation
{
    /// <summary>Exact (erf) GELU, our default.</summary>
    Gelu,
    /// <summary>ReLU.</summary>
    Relu,
}
