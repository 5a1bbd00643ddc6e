namespace PeerSharp.Generation;

/// <summary>
/// Counts of observed values at or below each of fixed upper bounds, with their sum, as a Prometheus histogram
/// carries them. Safe to observe and read from any thread.
/// </summary>
public sealed class Histogram(IReadOnlyList<double> upperBounds)
{
    readonly long[] _counts = new long[upperBounds.Count];
    readonly Lock _lock = new();
    long _count;
    double _sum;

    /// <summary>Seconds from a millisecond to a minute, for latencies.</summary>
    public static IReadOnlyList<double> LatencySeconds { get; } = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    /// <summary>The bucket bounds, increasing.</summary>
    public IReadOnlyList<double> UpperBounds => upperBounds;

    /// <summary>Adds one value.</summary>
    public void Observe(double value)
    {
        lock (_lock)
        {
            for (int i = 0; i < _counts.Length; i++)
                if (value <= upperBounds[i]) _counts[i]++;
            _count++;
            _sum += value;
        }
    }

    /// <summary>Cumulative counts per bound, the count of all values and their sum, at one moment.</summary>
    public (long[] Cumulative, long Count, double Sum) Snapshot()
    {
        lock (_lock) return ([.. _counts], _count, _sum);
    }
}
