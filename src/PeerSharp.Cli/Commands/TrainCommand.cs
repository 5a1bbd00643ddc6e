using System.CommandLine;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Model;
using PeerSharp.Training;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer train`: trains a language model, validating and checkpointing as it goes.</summary>
static class TrainCommand
{
    public static Command Create()
    {
        var run = new RunOptions();
        var data = new Option<string?>("--data") { Description = "Training text: a .txt file, a folder of .txt files, or .jsonl/.jsonl.gz with a text field (default: the bundled Gutenberg books)" };
        var validation = new Option<string?>("--validation") { Description = "Validation text (default: the bundled validation books when --data is not given)" };
        var output = new Option<string?>("--out") { Description = "Run folder for checkpoints and TensorBoard logs (default: runs/PRESET)" };
        var resume = new Option<string?>("--resume") { Description = "Continue from a checkpoint (default: the run folder's)", Arity = ArgumentArity.ZeroOrOne };
        var sample = new Option<int>("--sample-tokens") { Description = "Tokens of text to generate at the end", DefaultValueFactory = _ => 300 };
        var command = new Command("train", "Train a PEER language model.");
        foreach (var option in run.All.Concat<Option>([data, validation, output, resume, sample])) command.Options.Add(option);

        command.SetAction(parse =>
        {
            var folder = parse.GetValue(output) ?? Path.Combine("runs", parse.GetValue(run.Preset)!);
            var checkpointPath = Path.Combine(folder, "checkpoint");
            TransformerLM model;
            IOptimizer optimizer;
            RunConfig config;
            long startStep = 0, tokensSeen = 0;
            if (parse.GetResult(resume) is not null)
            {
                var from = parse.GetValue(resume) ?? checkpointPath;
                var saved = Checkpoint.Read(from);
                config = run.Resolve(parse, saved.Config);
                (model, optimizer, var info) = TrainingSetup.Resume(from, config);
                (startStep, tokensSeen) = (info.Step, info.TokensSeen);
                AnsiConsole.MarkupLine($"Resuming [bold]{Markup.Escape(from)}[/] at step {startStep}.");
            }
            else
            {
                config = run.Resolve(parse);
                (model, optimizer) = TrainingSetup.Create(config);
            }
            using var _ = model;
            using var __ = optimizer;

            var dataPath = parse.GetValue(data);
            var validationPath = parse.GetValue(validation) ?? (dataPath is null ? BundledCorpus.ValidationPath : null);
            using var corpus = RunOptions.OpenCorpus(dataPath, BundledCorpus.TrainPath, config.Model.Tokenizer);
            using var heldOutCorpus = validationPath is null ? null : RunOptions.OpenCorpus(validationPath, validationPath, config.Model.Tokenizer);
            // Without held-out text, the last 1% of the training text (at least 8 windows) validates.
            var (trainCorpus, validationCorpus) = heldOutCorpus is null
                ? corpus.HoldOut(0.01, 8L * (config.Model.ContextLength + 1))
                : (corpus, heldOutCorpus);
            if (heldOutCorpus is null)
                AnsiConsole.MarkupLine($"No --validation text given: the last {validationCorpus.TokenCount:N0} tokens of --data are held out for validation.");

            var parameters = ParameterSummary.Of(model).Sum(g => g.Count);
            AnsiConsole.MarkupLine($"Training {parameters:N0} parameters on {trainCorpus.TokenCount:N0} tokens ({config.Model.Tokenizer}); feed-forwards {string.Join(" ", config.Model.FeedForwardKinds())}; {config.Train.Steps} steps of {config.Train.BatchSize}×{config.Model.ContextLength} tokens.");
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());

            var metricsPath = Path.Combine(folder, "metrics.jsonl");
            var curvesPath = Path.Combine(folder, "curves.png");
            using var metrics = new MetricsLog(metricsPath, keepThroughStep: startStep);
            var trainer = new Trainer(config, model, optimizer, trainCorpus, validationCorpus, checkpointPath, Path.Combine(folder, "tensorboard")) { Metrics = metrics };
            using var cancellation = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancellation.Cancel(); };
            Console.CancelKeyPress += onCancel;
            trainer.Evaluated += (step, result) => AnsiConsole.MarkupLine(
                $"step {step,6}  validation loss {result.Loss:F4}  perplexity {result.Perplexity:F2}  [bold]bits/byte {result.BitsPerByte:F3}[/]" +
                string.Concat(result.Layers.Select(l => $"  block {l.Block}: usage {l.Usage:P1}, unevenness {l.Unevenness:F2}")));
            TrainResult result;
            try
            {
                result = TrainingProgress.Show(trainer, config.Train, startStep, tokensSeen, cancellation.Token);
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
            TrainingCurves.Save(MetricsLog.Read(metricsPath), $"{Path.GetFileName(Path.GetFullPath(folder))}: {config.Model.LayerCount} blocks, d_model {config.Model.ModelDim}, {string.Join(" ", config.Model.FeedForwardKinds())}", curvesPath);

            if (!result.Completed)
            {
                AnsiConsole.MarkupLine($"Stopped at step {result.Step}; checkpoint written to {Markup.Escape(result.CheckpointPath ?? "")}. Continue with --resume.");
                return 130;
            }
            AnsiConsole.MarkupLine($"Done: {result.Step} steps, {result.TokensPerSecond:N0} training tokens/s; checkpoint {Markup.Escape(result.CheckpointPath ?? "")}; curves {Markup.Escape(curvesPath)}");
            if (result.Validation is { } v)
                AnsiConsole.MarkupLine($"[bold]Validation: loss {v.Loss:F4} nats/token, perplexity {v.Perplexity:F2}, {v.BitsPerByte:F3} bits per byte[/] ({v.Tokens:N0} tokens)");
            var samples = parse.GetValue(sample);
            if (samples > 0)
            {
                AnsiConsole.MarkupLine("[bold]Sample[/] (temperature 0.8, top-k 40):");
                TextGenerator.Generate(model, Tokenizers.Create(config.Model.Tokenizer), "The ", new SamplingOptions(samples), Console.Write);
                Console.WriteLine();
            }
            return 0;
        });
        return command;
    }
}
