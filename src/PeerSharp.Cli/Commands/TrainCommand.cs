using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Distributed;
using PeerSharp.Evaluation;
using PeerSharp.Model;
using PeerSharp.Training;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>
/// `peer train`: resolves the run's settings, then runs a <see cref="TrainingRun"/> with a progress display.
/// Under mpirun every rank runs it (data parallel, docs/DISTRIBUTED.md): rank 0 resolves the settings, reads the
/// checkpoint, writes the run folder and prints; the other ranks train silently.
/// </summary>
static class TrainCommand
{
    public static Command Create()
    {
        var run = new RunOptions();
        var data = new Option<string?>("--data") { Description = "Training text: a .txt file, a folder of .txt files, or .jsonl/.jsonl.gz with a text field (default: the bundled Gutenberg books)" };
        var validation = new Option<string?>("--validation") { Description = "Validation text (default: the bundled validation books when --data is not given, else the last 1% of --data)" };
        var output = new Option<string?>("--out") { Description = "Run folder for checkpoints and logs (default: runs/PRESET; when resuming, the checkpoint's folder)" };
        var resume = new Option<string?>("--resume") { Description = "Continue from a checkpoint (default: the run folder's)", Arity = ArgumentArity.ZeroOrOne };
        var force = new Option<bool>("--force") { Description = "Start a fresh run even in a folder that already holds one, replacing it" };
        var replay = new Option<string?>("--replay") { Description = "Replay text for --set train.replayFraction=F (an earlier domain's training text; docs/LIFELONG.md)" };
        var anchor = new Option<string?>("--anchor") { Description = "Checkpoint whose weights --set train.anchorPull=λ pulls toward (where an earlier phase ended; docs/LIFELONG.md)" };
        var sample = new Option<int>("--sample-tokens") { Description = "Tokens of text to generate at the end", DefaultValueFactory = _ => 300 };
        var command = new Command("train", "Train a PEER language model.");
        foreach (var option in run.All.Concat<Option>([data, validation, replay, anchor, output, resume, force, sample])) command.Options.Add(option);

        command.SetAction(parse =>
        {
            var sampling = new SamplingOptions(parse.GetValue(sample));
            sampling.Validate();   // before training, not after it
            var replicas = DistributedLaunch.Replicas();
            var root = replicas.Rank == 0;
            string? resumeFrom = null;
            RunConfig? resumed = null;
            if (parse.GetResult(resume) is not null)
            {
                resumeFrom = parse.GetValue(resume) ?? Checkpoint.PathInFolder(parse.GetValue(output) ?? Path.Combine("runs", parse.GetValue(run.Preset)!));
                if (root) resumed = Checkpoint.Read(resumeFrom).Config;
            }
            var config = root ? run.Resolve(parse, resumed) : null;
            if (replicas.Size > 1)   // the settings rank 0 resolved (from its checkpoint, say) are every rank's
                config = RunConfig.Overlay(new RunConfig(), System.Text.Json.Nodes.JsonNode.Parse(replicas.Broadcast(config?.ToJson() ?? ""))!.AsObject(), "rank 0's settings");
            using var training = TrainingRun.Open(new TrainingRunOptions
            {
                Replicas = replicas,
                Config = config!,
                Folder = parse.GetValue(output) ?? (resumeFrom is null ? Path.Combine("runs", parse.GetValue(run.Preset)!) : null),
                DataPath = parse.GetValue(data),
                ValidationPath = parse.GetValue(validation),
                ReplayPath = parse.GetValue(replay),
                AnchorPath = parse.GetValue(anchor),
                ResumeFrom = resumeFrom,
                RequireStepsLeft = true,
                Overwrite = parse.GetValue(force),
            });
            if (!root)
            {
                using var stop = new CancellationTokenSource();
                using var stopSignals = StopSignals.Cancel(stop);
                var shard = training.Run(stop.Token);
                return shard.Completed ? 0 : 130;
            }
            if (resumeFrom is not null) AnsiConsole.MarkupLine($"Resuming [bold]{Markup.Escape(resumeFrom)}[/] at step {training.StartStep} in {Markup.Escape(training.Folder)}.");
            if (training.ValidationHeldOutFromData)
                AnsiConsole.MarkupLine($"No --validation text given: the last {training.ValidationCorpus.TokenCount:N0} tokens of --data are held out for validation.");
            var parameters = ParameterSummary.Of(training.Model).Sum(g => g.Count);
            var m = config!.Model;
            if (replicas.Size > 1)
                AnsiConsole.MarkupLine($"Data parallel over {replicas.Size} ranks: each trains on {config.Train.BatchSize / Math.Max(1, replicas.Size)} of the {config.Train.BatchSize} sequences of every batch.");
            if (training.Sharding is not null)
                AnsiConsole.MarkupLine($"Expert parallel: each rank holds the experts of id mod {replicas.Size} = its rank, {m.PeerOptions.ExpertCount / replicas.Size:N0} of the {m.PeerOptions.ExpertCount:N0} rows of every PEER table.");
            AnsiConsole.MarkupLine($"Training {parameters:N0} parameters on {training.TrainCorpus.TokenCount:N0} tokens ({EnumNames.Name(m.Tokenizer)}); feed-forwards {string.Join(" ", m.FeedForwardKinds().Select(EnumNames.Name))}; {config.Train.Steps} steps of {config.Train.BatchSize}×{m.ContextLength} tokens.");
            training.Trainer.Evaluated += (step, result) =>
            {
                AnsiConsole.MarkupLine(
                    $"step {step,6}  validation loss {result.Loss:F4}  perplexity {result.Perplexity:F2}  [bold]bits/byte {result.BitsPerByte:F3}[/]" +
                    string.Concat(result.Layers.Select(l => $"  block {l.Block}: {Markup.Escape(l.Describe())}")));
                if (UsageWarning.For(m, step, config.Train.Steps, result) is { } warning) AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(warning)}[/]");
            };

            // Ctrl+C, SIGTERM (timeout, docker stop, schedulers) and SIGHUP (a closed terminal) all stop after the
            // current step and write a checkpoint.
            using var cancellation = new CancellationTokenSource();
            using var signals = StopSignals.Cancel(cancellation);
            var result = TrainingProgress.Show(training, cancellation.Token);

            if (!result.Completed)
            {
                AnsiConsole.MarkupLine($"Stopped at step {result.Step}; checkpoint written to {Markup.Escape(result.CheckpointPath ?? "")}. Continue with --resume.");
                return 130;
            }
            if (training.Sharding is not null)
                AnsiConsole.MarkupLine($"Expert parallel: rank 0 sent {training.Trainer.ExpertParallelBytesPerStep / 1e6:N2} MB per step to the other ranks (requests, partial outputs and their gradients).");
            if (replicas.Size > 1)
                AnsiConsole.MarkupLine($"The parameters{(training.Sharding is null ? "" : " outside the sharded tables")} are identical on all {replicas.Size} ranks (checksum {training.Trainer.ParameterChecksum:x16}).");
            AnsiConsole.MarkupLine($"Done: {result.Step} steps, {result.TokensPerSecond:N0} training tokens/s; checkpoint {Markup.Escape(result.CheckpointPath ?? "")}; curves {Markup.Escape(training.CurvesPath)}");
            if (result.Validation is { } v)
                AnsiConsole.MarkupLine($"[bold]Validation: loss {v.Loss:F4} nats/token, perplexity {v.Perplexity:F2}, {v.BitsPerByte:F3} bits per byte[/] ({v.Tokens:N0} tokens)");
            if (sampling.MaxNewTokens > 0)
            {
                AnsiConsole.MarkupLine($"[bold]Sample[/] (temperature {sampling.Temperature}, top-k {sampling.TopK}):");
                TextGenerator.Generate(training.Model, Tokenizers.Create(m.Tokenizer), "The ", sampling, Console.Write);
                Console.WriteLine();
            }
            return 0;
        });
        return command;
    }
}
