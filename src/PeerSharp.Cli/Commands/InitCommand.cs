using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Model;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>
/// `peer init`: writes the checkpoint of a freshly initialised model (<see cref="FreshCheckpoint"/>), its expert tables
/// drawn slice by slice as they are written, so models far larger than memory can be made and then used with
/// `peer generate --map-tables` (docs/MEMORY_MAPPED.md).
/// </summary>
static class InitCommand
{
    public static Command Create()
    {
        var run = new RunOptions();
        var output = new Option<string>("--out") { Description = "Folder of the new checkpoint (FOLDER/checkpoint.json)", Required = true };
        var command = new Command("init", "Write a freshly initialised model's checkpoint without holding its expert tables in memory (for models larger than memory; use it with --map-tables).");
        foreach (var option in run.All.Append(output)) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var folder = parse.GetValue(output)!;
            if (File.Exists(Checkpoint.SidecarPath(Checkpoint.PathInFolder(folder))))
                throw new PeerSharpException($"folder '{folder}' already holds a checkpoint; choose another --out");
            var config = run.Resolve(parse);
            var parameters = FlopCounter.Parameters(config.Model).Total;
            var storage = config.Model.PeerOptions.TableStorage == Kernels.ExpertTableStorage.BFloat16 ? "float32, expert tables bfloat16" : "float32";
            AnsiConsole.MarkupLine($"Writing a fresh model of {parameters:N0} parameters ({config.Model.ParameterBytes() / 1e9:N2} GB, {storage}) to {Markup.Escape(folder)}.");
            var started = DateTime.UtcNow;
            string sidecar;
            if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
            {
                var reported = -1;
                sidecar = FreshCheckpoint.Write(config, folder, new SyncProgress(f =>
                {
                    var tenth = (int)(f * 10);
                    if (tenth > reported) Console.WriteLine($"written {f:P0}");
                    reported = Math.Max(reported, tenth);
                }));
            }
            else
            {
                sidecar = "";
                AnsiConsole.Progress().AutoClear(false)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                    .Start(context =>
                    {
                        var task = context.AddTask("writing", maxValue: 1);
                        sidecar = FreshCheckpoint.Write(config, folder, new SyncProgress(f => task.Value = f));
                    });
            }
            AnsiConsole.MarkupLine($"Done in {(DateTime.UtcNow - started).TotalSeconds:N0} s: {Markup.Escape(sidecar)}");
            AnsiConsole.MarkupLine($"Sample it with its tables mapped from the file: peer generate --checkpoint {Markup.Escape(sidecar)} --map-tables");
            return 0;
        });
        return command;
    }

    /// <summary>Reports on the writing thread, in order (Progress&lt;T&gt; posts to the thread pool).</summary>
    sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
