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
        var placement = new Option<string>("--placement") { Description = $"Where the new sub-keys go: {string.Join(" or ", EnumNames.All<KeyPlacement>())} (at the new domain's queries, gated off the old domain's)", DefaultValueFactory = _ => EnumNames.Name(KeyPlacement.Random) };
        var newDomain = new Option<string?>("--new-domain") { Description = "Text of the new domain (--placement queries): the new sub-keys go where its queries fall" };
        var oldDomain = new Option<string?>("--old-domain") { Description = "Text of the old domain (--placement queries; default: the bundled training books): its queries keep to the old experts" };
        var leak = new Option<double>("--gate-leak") { Description = "Fraction of the old domain's sampled queries each new sub-key may reach (--placement queries; 0: none)", DefaultValueFactory = _ => 0 };
        var newValidation = new Option<string?>("--new-validation") { Description = "Held-out text of the new domain, whose routing to the grown experts is shown beside --data's" };
        var data = new Option<string?>("--data") { Description = "Text scored before and after growing (default: the bundled validation books)" };
        var tokens = new Option<long>("--tokens") { Description = "Most tokens to score", DefaultValueFactory = _ => 65536 };
        var command = new Command("grow", "Grow the expert pool of a checkpoint: old experts keep their rows under new ids, new experts start silent.") { checkpoint, subKeys, output, scale, placement, newDomain, oldDomain, leak, newValidation, data, tokens };
        command.SetAction(parse =>
        {
            var folder = parse.GetValue(output)!;
            if (File.Exists(Checkpoint.SidecarPath(Checkpoint.PathInFolder(folder))))
                throw new PeerSharpException($"folder '{folder}' already holds a checkpoint; choose another --out");
            var source = parse.GetValue(checkpoint)!;
            var options = new GrowthOptions
            {
                SubKeyCount = parse.GetValue(subKeys),
                NewKeyScale = parse.GetValue(scale),
                Placement = EnumNames.Parse<KeyPlacement>(parse.GetValue(placement)!, "placement"),
                NewDomain = parse.GetValue(newDomain),
                OldDomain = parse.GetValue(oldDomain) ?? BundledCorpus.TrainPath,
                GateLeak = parse.GetValue(leak),
            };
            var grown = ExpertGrowth.GrowCheckpoint(source, folder, options);
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
            WriteRouting(source, grown, [(parse.GetValue(data) ?? BundledCorpus.ValidationPath, "scored text"), (parse.GetValue(newValidation), "new domain")], parse.GetValue(tokens));
            AnsiConsole.MarkupLine($"Grown checkpoint: {Markup.Escape(grown)}");
            return 0;
        });
        return command;
    }

    /// <summary>Per text and layer, how many of its selections and tokens reach a grown expert (<see cref="GrowthRouting.Measure"/>).</summary>
    static void WriteRouting(string source, string grown, IEnumerable<(string? Path, string Name)> texts, long tokens)
    {
        var before = Checkpoint.Read(source).Config.Model;
        var (model, info) = Checkpoint.LoadModel(grown);
        using var _ = model;
        var table = new Table().AddColumn("text").AddColumn(new TableColumn("block").RightAligned())
            .AddColumn(new TableColumn("selections of grown experts").RightAligned()).AddColumn(new TableColumn("tokens reaching one").RightAligned());
        foreach (var (path, name) in texts)
        {
            if (path is null) continue;
            using var corpus = TokenCorpus.Open(path, info.Config.Model.Tokenizer);
            foreach (var layer in GrowthRouting.Measure(model, before, corpus, info.Config.Train.BatchSize, tokens))
                table.AddRow(Markup.Escape($"{name} ({path})"), layer.Block.ToString(), layer.GrownShare.ToString("P2"), layer.TokensReachingGrown.ToString("P1"));
        }
        AnsiConsole.Write(table);
    }
}
