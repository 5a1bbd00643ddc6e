using PeerSharp.Training;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>Shows a training run: a live progress bar on a terminal, a plain line every N steps otherwise.</summary>
static class TrainingProgress
{
    public static TrainResult Show(TrainingRun run, CancellationToken cancellation)
    {
        var (trainer, config) = (run.Trainer, run.Config.Train);
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
        {
            trainer.StepCompleted += r =>
            {
                if (r.Step % config.LogInterval == 0 || r.Step == r.TotalSteps)
                    Console.WriteLine($"step {r.Step,6}/{r.TotalSteps}  loss {r.Loss:F4}  lr {r.LearningRate:E2}  grad-norm {r.GradientNorm:F2}  {r.TokensPerSecond:N0} tok/s");
            };
            return run.Run(cancellation);
        }

        TrainResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("training", maxValue: config.Steps);
                task.Value = run.StartStep;
                trainer.StepCompleted += r =>
                {
                    task.Value = r.Step;
                    task.Description = $"step {r.Step}/{r.TotalSteps} loss {r.Loss:F3} {r.TokensPerSecond:N0} tok/s";
                };
                trainer.EvaluationProgress += f => task.Description = $"validating {f:P0}";
                result = run.Run(cancellation);
            });
        return result!;
    }
}
