using System.Diagnostics;
using System.Text.Json;
using PeerSharp.Config;
using PeerSharp.Training;

namespace PeerSharp.Experiments;

/// <summary>
/// One configuration's training speed, measured alone on the machine: a line of experiments/NAME.timings.jsonl.
/// </summary>
/// <param name="Run">The spec's run name (speed does not depend on the budget or the seed).</param>
/// <param name="SecondsPerStep">Wall seconds per optimizer step (forward, backward, clipping, update), validation excluded.</param>
/// <param name="TimedSteps">Steps timed, after <paramref name="WarmupSteps"/> untimed ones.</param>
/// <param name="WarmupSteps">Steps run first and not timed (allocations, first-touch of memory, thread start-up).</param>
/// <param name="Cpu">The processor's model name.</param>
/// <param name="Cores">Logical processors.</param>
/// <param name="LoadBefore">The 1-minute load average just before the measurement: near 0 on an idle machine.</param>
/// <param name="MeasuredAt">When (UTC).</param>
public sealed record RunTiming(string Run, double SecondsPerStep, int TimedSteps, int WarmupSteps, string Cpu, int Cores, double LoadBefore, DateTime MeasuredAt);

/// <summary>
/// The training time of a sweep's runs as it would be on an idle machine. A sweep's runs train over hours in the
/// background, while other work shares the cores, so the wall time each run recorded says as much about the load
/// as about the method. Here every configuration of a spec trains a few steps alone, one after the other, and the
/// report estimates each run's training time as its steps times its configuration's seconds per step
/// (docs/EXPERIMENTS.md, "At equal wall-clock time"). Measure on an idle machine: the load average before each run is recorded.
/// </summary>
public static class SweepTiming
{
    /// <summary>Untimed steps before the timed ones.</summary>
    public const int DefaultWarmupSteps = 3;

    /// <summary>Timed steps per configuration.</summary>
    public const int DefaultTimedSteps = 12;

    /// <summary>The timings file beside a results file: experiments/NAME.timings.jsonl for experiments/NAME.results.jsonl.</summary>
    public static string PathBeside(string resultsPath, string experiment) =>
        Path.Combine(Path.GetDirectoryName(resultsPath) ?? "", experiment + ".timings.jsonl");

    /// <summary>The timings in a file, by run name (later lines win); empty when the file does not exist.</summary>
    public static IReadOnlyDictionary<string, RunTiming> Read(string path)
    {
        var timings = new Dictionary<string, RunTiming>();
        if (!File.Exists(path)) return timings;
        int number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            RunTiming? timing;
            try
            {
                timing = JsonSerializer.Deserialize<RunTiming>(line, RunConfig.Json);
            }
            catch (JsonException e)
            {
                throw new PeerSharpException($"{path}:{number} is not a run timing: {e.Message}");
            }
            if (timing is null || string.IsNullOrEmpty(timing.Run) || !(timing.SecondsPerStep > 0))
                throw new PeerSharpException($"{path}:{number} is not a run timing: expected a run name and positive seconds per step");
            timings[timing.Run] = timing;
        }
        return timings;
    }

    /// <summary>
    /// Times every run of <paramref name="spec"/> that <paramref name="timingsPath"/> lacks (all of them when
    /// <paramref name="again"/>), appending one line each; scratch run folders go under
    /// <paramref name="runsFolder"/> and are deleted. <paramref name="progress"/> hears (index, count, run name) before each,
    /// <paramref name="onTimed"/> each timing as it is written.
    /// </summary>
    public static IReadOnlyList<RunTiming> Measure(SweepSpec spec, string specFolder, string timingsPath, string runsFolder,
                                                   bool again = false, int warmupSteps = DefaultWarmupSteps, int timedSteps = DefaultTimedSteps,
                                                   Action<int, int, string>? progress = null, Action<RunTiming>? onTimed = null,
                                                   CancellationToken cancellation = default)
    {
        if (warmupSteps < 1 || timedSteps < 1) throw new PeerSharpException($"timing needs at least one warm-up and one timed step; got {warmupSteps} and {timedSteps}");
        var existing = again ? new Dictionary<string, RunTiming>() : Read(timingsPath);
        // One item per configuration: the first budget and seed; speed depends on neither.
        var items = Sweep.Plan(spec).GroupBy(item => item.Run.Name).Select(g => g.First()).Where(item => !existing.ContainsKey(item.Run.Name)).ToList();
        string? Resolve(string? path) => path is null ? null : Path.GetFullPath(Path.Combine(specFolder, path));
        var measured = new List<RunTiming>();
        for (int i = 0; i < items.Count && !cancellation.IsCancellationRequested; i++)
        {
            progress?.Invoke(i, items.Count, items[i].Run.Name);
            var timing = Time(items[i], Resolve(spec.Data.Train), Resolve(spec.Data.Validation),
                              Path.Combine(runsFolder, spec.Name, "timing", items[i].Run.Name), warmupSteps, timedSteps, cancellation);
            if (timing is null) break;
            Sweep.AppendLine(timingsPath, JsonSerializer.Serialize(timing, Sweep.Compact));
            measured.Add(timing);
            onTimed?.Invoke(timing);
        }
        return measured;
    }

    static RunTiming? Time(SweepItem item, string? trainPath, string? validationPath, string folder, int warmupSteps, int timedSteps, CancellationToken cancellation)
    {
        var train = item.Config.Train;
        var steps = warmupSteps + timedSteps;
        // Same model, batch and data as the sweep's run; only the length changes, and the one validation at the
        // end (after the clock stops) reads a single batch.
        var config = item.Config with
        {
            Train = train with
            {
                Steps = steps, WarmupSteps = 1, EvalInterval = steps, CheckpointInterval = 0,
                EvalTokens = (long)train.BatchSize * item.Config.Model.ContextLength,
            },
        };
        var (load, machine) = (MachineInfo.RecentLoad(), MachineInfo.Current());
        try
        {
            using var run = TrainingRun.Open(new TrainingRunOptions { Config = config, Folder = folder, DataPath = trainPath, ValidationPath = validationPath, Overwrite = true });
            var clock = new Stopwatch();
            run.Trainer.StepCompleted += step =>
            {
                if (step.Step == warmupSteps) clock.Start();
                else if (step.Step == steps) clock.Stop();
            };
            var result = run.Run(cancellation);
            if (!result.Completed) return null;
            return new RunTiming(item.Run.Name, clock.Elapsed.TotalSeconds / timedSteps, timedSteps, warmupSteps, machine.Cpu, machine.Cores, load, DateTime.UtcNow);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }
}
