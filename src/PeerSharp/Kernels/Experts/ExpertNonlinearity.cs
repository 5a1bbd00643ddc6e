using System.Runtime.CompilerServices;

namespace PeerSharp.Kernels;

/// <summary>
/// σ and σ' of the single-neuron experts for the fused kernels, matching torch's relu and exact (erf) gelu.
/// .NET has no erf, so Φ comes from the Chebyshev fit of erfc in Numerical Recipes (§6.2, erfcc), whose
/// relative error is below 1.2e-7 everywhere: GELU and its derivative stay within float32 rounding of torch's.
/// </summary>
internal static class ExpertNonlinearity
{
    const double InverseSqrt2 = 0.70710678118654752440;
    const double InverseSqrt2Pi = 0.39894228040143267794;

    /// <summary>σ(a) and σ'(a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (float Value, float Derivative) Evaluate(float a, ExpertActivation activation)
    {
        if (activation == ExpertActivation.Relu) return a > 0 ? (a, 1f) : (0f, 0f);
        // GELU(a) = a·Φ(a), GELU'(a) = Φ(a) + a·φ(a), with Φ(a) = erfc(−a/√2) / 2.
        double x = a;
        double gaussian = Math.Exp(-0.5 * x * x);
        double cdf = 0.5 * Erfc(-x * InverseSqrt2, gaussian);
        return ((float)(x * cdf), (float)(cdf + x * InverseSqrt2Pi * gaussian));
    }

    /// <summary>σ(a) alone (forward pass).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Value(float a, ExpertActivation activation)
    {
        if (activation == ExpertActivation.Relu) return a > 0 ? a : 0f;
        double x = a;
        return (float)(x * 0.5 * Erfc(-x * InverseSqrt2, Math.Exp(-0.5 * x * x)));
    }

    /// <summary>erfc(z), given exp(−z²) (shared with φ by the caller).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static double Erfc(double z, double expMinusZSquared)
    {
        double t = 1.0 / (1.0 + 0.5 * Math.Abs(z));
        double poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
                    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        double tail = t * expMinusZSquared * Math.Exp(poly);
        return z >= 0 ? tail : 2.0 - tail;
    }
}
