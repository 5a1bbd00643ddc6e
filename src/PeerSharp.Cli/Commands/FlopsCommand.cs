using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Model;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>
/// `peer flops`: forward FLOPs per token of every part of a model, training FLOPs per token and per step, the
/// parameters (total and active per token), and the steps a FLOP budget buys.
/// </summary>
static class FlopsCommand
{
    public static Command Create()
    {
        var run = new RunOptions();
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Count the model of this checkpoint instead" };
        var budget = new Option<double?>("--budget") { Description = "Training FLOP budget (like 6e18): print the steps it buys at the run's batch size" };
        var command = new Command("flops", "Print a model's FLOPs per token by part, its training FLOPs and its parameters, total and active.");
        foreach (var option in run.All) command.Options.Add(option);
        command.Options.Add(checkpoint);
        command.Options.Add(budget);
        command.SetAction(parse =>
        {
            var config = parse.GetValue(checkpoint) is { } path ? Checkpoint.Read(path).Config : run.Resolve(parse);
            var m = config.Model;
            var report = FlopCounter.Of(m);
            AnsiConsole.MarkupLine($"[bold]Model[/] d_model {m.ModelDim}, {m.LayerCount} blocks, context {m.ContextLength}, vocab {m.VocabSize}; feed-forwards {string.Join(" ", m.FeedForwardKinds().Select((k, i) => $"{i}:{EnumNames.Name(k)}"))}");

            var table = new Table().AddColumn("part").AddColumn(new TableColumn("forward FLOPs / token").RightAligned()).AddColumn(new TableColumn("share").RightAligned());
            var forward = report.ForwardFlopsPerToken;
            foreach (var line in report.Lines)
                table.AddRow(Markup.Escape(line.Part + (line.MatrixProducts ? "" : " *")), line.Flops.ToString("N0"), (line.Flops / forward).ToString("P1"));
            table.AddRow("[bold]forward, per token[/]", $"[bold]{forward:N0}[/]", "100.0 %");
            AnsiConsole.Write(table);

            var batch = config.Train.BatchSize;
            var tokensPerStep = (long)batch * m.ContextLength;
            AnsiConsole.MarkupLine($"training per token (3 × forward)  {report.TrainingFlopsPerToken:N0}");
            AnsiConsole.MarkupLine($"training per step ({batch} × {m.ContextLength} tokens)  {report.TrainingFlopsPerStep(batch):0.###e+00}");
            AnsiConsole.MarkupLine($"training, {config.Train.Steps} steps  {report.TrainingFlopsPerStep(batch) * config.Train.Steps:0.###e+00}");
            AnsiConsole.MarkupLine($"parameters  {report.Parameters:N0} total, {report.ActiveParameters:N0} active per token");
            if (parse.GetValue(budget) is { } flops)
            {
                if (!(flops > 0)) throw new PeerSharpException($"FLOP budget {flops} must be positive");
                // A run's steps are an int (TrainConfig.Steps), as in a sweep; beyond that the count and its tokens overflow.
                if (flops / report.TrainingFlopsPerStep(batch) > int.MaxValue)
                    throw new PeerSharpException($"FLOP budget {flops:0.##e+00} buys more than {int.MaxValue:N0} steps, the most a run can take; expected a budget of at most {report.TrainingFlopsPerStep(batch) * int.MaxValue:0.##e+00} FLOPs at {tokensPerStep:N0} tokens per step");
                var steps = report.StepsForBudget(flops, batch);
                AnsiConsole.MarkupLine($"[bold]budget {flops:0.##e+00} FLOPs[/] buys {steps:N0} steps = {steps * tokensPerStep:N0} training tokens");
            }
            AnsiConsole.MarkupLine("Matrix products count 2 FLOPs per multiply-add; * marks product-key selection, 1 FLOP per candidate sum and per element a top-k scans. Norms, activations and softmaxes are not counted; attention counts the full T × T scores (docs/BASELINES.md).");
            return 0;
        });
        return command;
    }
}
