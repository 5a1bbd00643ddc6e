namespace PeerSharp.Optimizers;

/// <summary>Linear warm-up to the peak rate, then cosine decay to a floor at the last step.</summary>
public sealed record LearningRateSchedule(double Peak, int WarmupSteps, int TotalSteps, double FloorRatio)
{
    /// <summary>The learning rate for a 0-based step.</summary>
    public double At(long step)
    {
        if (step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        var decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        var floor = Peak * FloorRatio;
        return floor + 0.5 * (Peak - floor) * (1 + Math.Cos(Math.PI * progress));
    }
}
