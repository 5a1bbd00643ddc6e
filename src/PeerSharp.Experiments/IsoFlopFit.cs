namespace PeerSharp.Experiments;

/// <summary>
/// A method's compute-optimal size at one budget as isoFLOP analyses find it (Hoffmann et al. 2022, "approach 2"):
/// a parabola fitted by least squares to validation bpb against log10(parameters) over the sizes tried; its vertex
/// is the fitted optimum. The vertex is an optimum only where the parabola opens upward and lies within the sizes
/// tried; otherwise the optimum is outside the grid, and <see cref="Where"/> says on which side. The fit is taken
/// about the sizes' mean log size (<see cref="Center"/>), so that its normal equations stay well conditioned.
/// </summary>
/// <param name="A">Curvature: bpb ≈ A·u² + B·u + C with u = log10(parameters) − Center.</param>
/// <param name="B">Slope at the center.</param>
/// <param name="C">Fitted bpb at the center.</param>
/// <param name="Center">The mean log10(parameters) of the sizes.</param>
/// <param name="Smallest">log10 of the smallest size tried.</param>
/// <param name="Largest">log10 of the largest size tried.</param>
readonly record struct IsoFlopFit(double A, double B, double C, double Center, double Smallest, double Largest)
{
    /// <summary>The least-squares parabola through (log10 parameters, bpb); null with fewer than three distinct sizes.</summary>
    public static IsoFlopFit? Of(IReadOnlyList<(double LogParameters, double BitsPerByte)> points)
    {
        if (points.Select(p => p.LogParameters).Distinct().Count() < 3) return null;
        var center = points.Average(p => p.LogParameters);
        double s1 = 0, s2 = 0, s3 = 0, s4 = 0, y0 = 0, y1 = 0, y2 = 0;
        foreach (var (x, y) in points)
        {
            var u = x - center;
            (s1, s2, s3, s4) = (s1 + u, s2 + u * u, s3 + u * u * u, s4 + u * u * u * u);
            (y0, y1, y2) = (y0 + y, y1 + u * y, y2 + u * u * y);
        }
        double n = points.Count;
        // The normal equations [s4 s3 s2; s3 s2 s1; s2 s1 n] (A, B, C) = (y2, y1, y0), by Cramer's rule.
        static double Det(double a, double b, double c, double d, double e, double f, double g, double h, double i) =>
            a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
        var det = Det(s4, s3, s2, s3, s2, s1, s2, s1, n);
        return new IsoFlopFit(
            Det(y2, s3, s2, y1, s2, s1, y0, s1, n) / det,
            Det(s4, y2, s2, s3, y1, s1, s2, y0, n) / det,
            Det(s4, s3, y2, s3, s2, y1, s2, s1, y0) / det,
            center, points.Min(p => p.LogParameters), points.Max(p => p.LogParameters));
    }

    /// <summary>log10 of the fitted optimum's parameters: the vertex (meaningful only when <see cref="Interior"/>).</summary>
    public double Vertex => Center - B / (2 * A);

    /// <summary>The fitted bpb at the vertex.</summary>
    public double Minimum => C - B * B / (4 * A);

    /// <summary>Whether the parabola opens upward with its vertex within the sizes tried: an interior optimum.</summary>
    public bool Interior => A > 0 && Vertex >= Smallest && Vertex <= Largest;

    /// <summary>Where the fitted optimum lies, in words.</summary>
    public string Where =>
        Interior ? "inside the sizes tried"
        : A > 0 ? (Vertex < Smallest ? "below the smallest size tried" : "above the largest size tried")
        : At(Smallest) <= At(Largest) ? "no minimum: the fit falls towards the smallest size"
        : "no minimum: the fit falls towards the largest size";

    /// <summary>The fitted bpb at log10(parameters) = <paramref name="x"/>.</summary>
    public double At(double x) => A * (x - Center) * (x - Center) + B * (x - Center) + C;
}
