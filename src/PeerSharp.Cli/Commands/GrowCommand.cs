using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Growth;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer grow`: grows every PEER and PKM layer of a checkpoint to more sub-keys (<see cref="ExpertGrowth"/>) and scores it before and after.</summary>
static class GrowCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "Checkpoint to grow (its .json sidecar or base name)", Required = true };
        var subKeys = new Option<int>("--sub-keys") { Description = "New sub-key count n2 per half (N grows from n² to n2²)", Required = true };
        var output = new Option<string>("--out") { Description = "Folder of the grown checkpoint (a new run folder; resume it with peer train --resume OUT/checkpoint.json)", Required = true };
        var scale = new Option<double>("--new-key-scale") { Description = "Scale of the new sub-keys relative to fresh ones (small: they rarely displace trained experts)", DefaultValueFactory = _ => new GrowthOptions { SubKeyCount = 1 }.NewKeyScale };
        var data = new Option<string?>("--data") { Description = "Text scored before and after growing (default: the bundled validation books)" };
        var tokens = new Option<long>("--tokens") { Description = "Most tokens to score", DefaultValueFactory = _ => 65536 };
        var command = new Command("grow", "Grow the expert pool of a checkpoint: old experts keep their rows under new ids, new experts start silent.") { checkpoint, subKeys, output, scale, data, tokens };
        command.SetAction(parse =>
        {
            var folder = parse.GetValue(output)!;
            if (File.Exists(Checkpoint.SidecarPath(Checkpoint.PathInFolder(folder))))
                throw new PeerSharpException($"folder '{folder}' already holds a checkpoint; choose another --out");
            var source = parse.GetValue(checkpoint)!;
            var grown = ExpertGrowth.GrowCheckpoint(source, folder, new GrowthOptions { SubKeyCount = parse.GetValue(subKeys), NewKeyScale = parse.GetValue(scale) });
            var table = new Table().AddColumn("checkpoint").AddColumn(new TableColumn("experts").RightAligned())
                .AddColumn(new TableColumn("loss").RightAligned()).AddColumn(new TableColumn("bits per byte").RightAligned());
            foreach (var path in new[] { source, grown })
            {
                var (model, info) = Checkpoint.LoadModel(path);
                using var _ = model;
                using var corpus = TokenCorpus.Open(parse.GetValue(data) ?? BundledCorpus.ValidationPath, info.Config.Model.Tokenizer);
                var result = Evaluator.Evaluate(model, corpus, info.Config.Train.BatchSize, parse.GetValue(tokens));
                table.AddRow(Markup.Escape(path), string.Join(", ", result.Layers.Select(l => l.ExpertCount.ToString("N0"))), result.Loss.ToString("F4"), result.BitsPerByte.ToString("F4"));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"Grown checkpoint: {Markup.Escape(grown)}");
            return 0;
        });
        return command;
    }
}
