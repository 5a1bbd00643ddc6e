using PeerSharp.Experiments;

namespace PeerSharp.Tests.Experiments;

/// <summary>The isoFLOP parabola: what it recovers from exact points, and where it says the optimum lies.</summary>
public class IsoFlopFitTests
{
    static IsoFlopFit Fit(params (double X, double Y)[] points) => IsoFlopFit.Of(points) ?? throw new InvalidOperationException("no fit");

    [Fact]
    public void RecoversAParabolaThroughExactPoints()
    {
        // bpb = 0.5 (x − 6.2)² + 2.1 at x = log10(parameters) 5, 6, 6.5, 7: vertex at 10^6.2 parameters, 2.1 bits per byte.
        var fit = Fit([.. new[] { 5.0, 6.0, 6.5, 7.0 }.Select(x => (x, 0.5 * (x - 6.2) * (x - 6.2) + 2.1))]);
        Assert.Equal(0.5, fit.A, 9);
        Assert.Equal(6.2, fit.Vertex, 9);
        Assert.Equal(2.1, fit.Minimum, 9);
        Assert.True(fit.Interior);
        Assert.Equal("inside the sizes tried", fit.Where);
    }

    [Fact]
    public void LeastSquaresThroughNoisyPointsMatchesTheNormalEquationsByHand()
    {
        // Points (−1, 1), (0, 0), (1, 1), (2, 5): the least-squares parabola is y = 1.25 x² + 0.05 x − 0.15
        // (solved by hand from the normal equations about x = 0: 18a + 8b + 6c = 22, 8a + 6b + 2c = 10, 6a + 2b + 4c = 7); its vertex is at x = −0.02.
        var fit = Fit((-1, 1), (0, 0), (1, 1), (2, 5));
        Assert.Equal(1.25, fit.A, 9);
        Assert.Equal(-0.02, fit.Vertex, 9);
        Assert.Equal(-0.15 - 0.05 * 0.05 / (4 * 1.25), fit.Minimum, 9);
        Assert.Equal(-0.15, fit.At(0), 9);
        Assert.True(fit.Interior);
    }

    [Fact]
    public void SaysOnWhichSideTheOptimumLiesWhenTheGridDoesNotBracketIt()
    {
        // Rising from the smallest size with upward curvature: the vertex lies below the sizes tried.
        var below = Fit([.. new[] { 6.0, 6.5, 7.0 }.Select(x => (x, (x - 5.0) * (x - 5.0)))]);
        Assert.False(below.Interior);
        Assert.Equal("below the smallest size tried", below.Where);
        var above = Fit([.. new[] { 6.0, 6.5, 7.0 }.Select(x => (x, (x - 8.0) * (x - 8.0)))]);
        Assert.Equal("above the largest size tried", above.Where);
        // Concave or straight: no minimum, and the fit falls towards the lower end.
        var concave = Fit((6.0, 2.0), (6.5, 2.6), (7.0, 3.0));
        Assert.True(concave.A < 0);
        Assert.Equal("no minimum: the fit falls towards the smallest size", concave.Where);
        var falling = Fit((6.0, 3.0), (6.5, 2.5), (7.0, 2.0));
        Assert.Equal("no minimum: the fit falls towards the largest size", falling.Where);
    }

    [Fact]
    public void FewerThanThreeSizesHaveNoFit()
    {
        Assert.Null(IsoFlopFit.Of([(6.0, 2.0), (7.0, 2.5)]));
        Assert.Null(IsoFlopFit.Of([(6.0, 2.0), (6.0, 2.1), (7.0, 2.5)]));
    }
}
