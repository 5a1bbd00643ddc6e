using System.Text.Json;
using PeerSharp.Config;

namespace PeerSharp.Experiments;

/// <summary>
/// What a sweep run must remember across interruptions besides its checkpoint: the training seconds spent
/// before the last checkpoint and the validations so far (usage over training). Kept in RUN/sweep-progress.json,
/// written atomically; opening it for a resumed run drops what came after the checkpoint's step.
/// </summary>
sealed class RunProgress
{
    sealed record State(double Seconds, double CpuSeconds, long Step, List<CurvePoint> Points);

    readonly string _path;
    readonly double _secondsBefore, _cpuSecondsBefore;
    readonly TimeSpan _cpuAtStart = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
    readonly List<CurvePoint> _points;
    double _secondsThisRun, _cpuSecondsThisRun;

    RunProgress(string path, double secondsBefore, double cpuSecondsBefore, List<CurvePoint> points) =>
        (_path, _secondsBefore, _cpuSecondsBefore, _points) = (path, secondsBefore, cpuSecondsBefore, points);

    /// <summary>The progress of the run in <paramref name="folder"/>, resumed at <paramref name="startStep"/> (0: a fresh run).</summary>
    public static RunProgress Open(string folder, long startStep)
    {
        var path = Path.Combine(folder, "sweep-progress.json");
        State? state = null;
        if (startStep > 0 && File.Exists(path))
        {
            try
            {
                state = JsonSerializer.Deserialize<State>(File.ReadAllText(path), RunConfig.Json);
            }
            catch (JsonException)
            {
                // Unreadable: the run's time so far is unknown and counts as zero.
            }
        }
        var points = state?.Points.Where(p => p.Step <= startStep).ToList() ?? [];
        return new RunProgress(path, state?.Seconds ?? 0, state?.CpuSeconds ?? 0, points);
    }

    /// <summary>Training seconds over every part of the run.</summary>
    public double TotalSeconds => _secondsBefore + _secondsThisRun;

    /// <summary>CPU seconds of the process over every part of the run.</summary>
    public double TotalCpuSeconds => _cpuSecondsBefore + _cpuSecondsThisRun;

    /// <summary>The validations so far.</summary>
    public IReadOnlyList<CurvePoint> Points => _points;

    /// <summary>Records a validation.</summary>
    public void AddPoint(CurvePoint point) => _points.Add(point);

    /// <summary>Records the training seconds of this invocation and writes the file (at every checkpoint).</summary>
    public void SaveSeconds(double secondsThisRun)
    {
        _secondsThisRun = secondsThisRun;
        _cpuSecondsThisRun = (System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - _cpuAtStart).TotalSeconds;
        var temporary = _path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(new State(TotalSeconds, TotalCpuSeconds, _points.Count == 0 ? 0 : _points[^1].Step, _points), RunConfig.Json));
        File.Move(temporary, _path, overwrite: true);
    }
}
