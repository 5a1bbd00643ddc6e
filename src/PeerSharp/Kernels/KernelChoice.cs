namespace PeerSharp.Kernels;

/// <summary>Which implementation computes product-key retrieval and the selected experts (or memory values).</summary>
public enum KernelChoice
{
    /// <summary>Pure tensor ops: device independent, the tests' oracle.</summary>
    Plain,
    /// <summary>
    /// The fused C# kernels with row-sparse table gradients. They run where the parameters are float32 on the
    /// CPU; elsewhere (float64 gradient checks, other devices) the layers fall back to <see cref="Plain"/>.
    /// </summary>
    Fused,
}
