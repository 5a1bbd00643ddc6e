using ScottPlot;

namespace PeerSharp.Training;

/// <summary>Draws a run's metrics log as a PNG: training and validation loss against steps.</summary>
public static class TrainingCurves
{
    /// <summary>Writes the PNG; does nothing when the log has no training step yet.</summary>
    public static void Save(IReadOnlyList<MetricsRecord> records, string title, string path)
    {
        var training = records.Where(r => r.Loss is not null).ToList();
        var validation = records.Where(r => r.ValidationLoss is not null).ToList();
        if (training.Count == 0) return;
        var plot = new Plot();
        var steps = training.Select(r => (double)r.Step).ToArray();
        var losses = training.Select(r => r.Loss!.Value).ToArray();
        var raw = plot.Add.ScatterLine(steps, losses);
        raw.LegendText = "training loss (batch)";
        raw.Color = Colors.LightBlue;
        var smoothed = plot.Add.ScatterLine(steps, MovingAverage(losses, Math.Max(1, losses.Length / 50)));
        smoothed.LegendText = "training loss (moving average)";
        smoothed.Color = Colors.Blue;
        smoothed.LineWidth = 2;
        if (validation.Count > 0)
        {
            var points = plot.Add.Scatter(validation.Select(r => (double)r.Step).ToArray(), validation.Select(r => r.ValidationLoss!.Value).ToArray());
            points.LegendText = $"validation loss (last: {validation[^1].BitsPerByte:F3} bits per byte)";
            points.Color = Colors.OrangeRed;
            points.MarkerSize = 8;
            points.LineWidth = 2;
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss (nats per token)");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, 900, 500);
    }

    static double[] MovingAverage(double[] values, int window)
    {
        var result = new double[values.Length];
        double sum = 0;
        for (int i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }
}
