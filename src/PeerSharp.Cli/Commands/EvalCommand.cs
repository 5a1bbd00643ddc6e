using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Layers;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer eval`: loss, perplexity, bits per byte and expert usage of a checkpoint on any text.</summary>
static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "Checkpoint (its .json sidecar or base name)", Required = true };
        var mapTables = new Option<bool>("--map-tables") { Description = "Memory-map the expert tables read-only from the checkpoint instead of loading them (skips the file's SHA-256 check)" };
        var data = new Option<string?>("--data") { Description = "Text to score (default: the bundled validation books)" };
        var tokens = new Option<long>("--tokens") { Description = "Most tokens to score", DefaultValueFactory = _ => 262144 };
        var batch = new Option<int?>("--batch-size") { Description = "Sequences per forward (default 16; with --expert-choice training-group, the checkpoint's training batch size)" };
        var routing = RunOptions.EnumOption<ExpertChoiceEvaluation>("--expert-choice",
            "How expert-choice MoE layers route (docs/BASELINES.md): each sequence apart (default), each batch as one group as in training, or causally");
        var command = new Command("eval", "Evaluate a checkpoint: loss, perplexity, bits per byte, expert usage.") { checkpoint, data, tokens, batch, routing, mapTables };
        command.SetAction(parse =>
        {
            var (model, info) = Checkpoint.LoadModel(parse.GetValue(checkpoint)!, parse.GetValue(mapTables));
            using var _ = model;
            using var corpus = TokenCorpus.Open(parse.GetValue(data) ?? BundledCorpus.ValidationPath, info.Config.Model.Tokenizer);
            var groups = parse.GetValue(routing) ?? ExpertChoiceEvaluation.Sequence;
            Evaluator.RouteExpertChoice(model, groups);
            var batchSize = parse.GetValue(batch) ?? (groups == ExpertChoiceEvaluation.TrainingGroup ? info.Config.Train.BatchSize : 16);
            var result = Evaluator.Evaluate(model, corpus, batchSize, parse.GetValue(tokens));
            var table = new Table().AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
            table.AddRow("tokens scored", result.Tokens.ToString("N0"));
            table.AddRow("loss (nats/token)", result.Loss.ToString("F4"));
            table.AddRow("perplexity", result.Perplexity.ToString("F2"));
            table.AddRow("bits per byte", result.BitsPerByte.ToString("F4"));
            foreach (var layer in result.Layers)
            {
                table.AddRow($"block {layer.Block} expert usage", $"{layer.Usage:P2} of {layer.ExpertCount:N0}");
                table.AddRow($"block {layer.Block} unevenness (nats)", layer.Unevenness.ToString("F3"));
                if (layer.Halves is [var a, var b])
                    table.AddRow($"block {layer.Block} sub-keys in selected experts (half 1, half 2)", $"{a.Usage:P1}, {b.Usage:P1}");
                if (layer.FirstChoices > 0)
                    table.AddRow($"block {layer.Block} distinct first-choice experts per head", layer.FirstChoices.ToString("F0"));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
