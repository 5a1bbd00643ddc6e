using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Layers;
using PeerSharp.Model;
using Spectre.Console;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer info`: the model a config describes, its parameters per part, and the presets.</summary>
static class InfoCommand
{
    public static Command Create()
    {
        var run = new RunOptions();
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Describe the model of this checkpoint instead" };
        var command = new Command("info", "Print a model's shape and parameter counts, total and per part.");
        foreach (var option in run.All) command.Options.Add(option);
        command.Options.Add(checkpoint);
        command.SetAction(parse =>
        {
            var config = parse.GetValue(checkpoint) is { } path ? Checkpoint.Read(path).Config : run.Resolve(parse);
            config.Model.CheckFitsInMemory(training: false);
            using var model = new TransformerLM(config.Model);
            var m = config.Model;
            AnsiConsole.MarkupLine($"[bold]Model[/] d_model {m.ModelDim}, {m.LayerCount} blocks, {m.AttentionHeads} attention heads, context {m.ContextLength}, tokenizer {EnumNames.Name(m.Tokenizer)} (vocab {m.VocabSize}), {EnumNames.Name(m.Positions)} positions");
            AnsiConsole.MarkupLine($"[bold]Feed-forwards[/] {string.Join(" ", m.FeedForwardKinds().Select((k, i) => $"{i}:{EnumNames.Name(k)}"))}");
            var kinds = m.FeedForwardKinds();
            if (kinds.Contains(FeedForwardKind.Peer))
            {
                var p = m.PeerOptions;
                AnsiConsole.MarkupLine($"[bold]PEER[/] N = {p.SubKeyCount}² = {p.ExpertCount:N0} experts, h = {p.HeadCount}, k = {p.TopK} ({p.HeadCount * p.TopK} active per token), d_key = {p.KeyDim}, σ = {EnumNames.Name(p.Activation)}, query BN {(p.QueryBatchNorm ? "on" : "off")}, tables {EnumNames.Name(p.TableStorage)}");
            }
            if (kinds.Contains(FeedForwardKind.Pkm))
            {
                var p = m.PkmOptions;
                AnsiConsole.MarkupLine($"[bold]PKM[/] N = {p.SubKeyCount}² = {p.ValueCount:N0} values, h = {p.HeadCount}, k = {p.TopK} ({p.HeadCount * p.TopK} read per token), d_key = {p.KeyDim}, query BN {(p.QueryBatchNorm ? "on" : "off")}");
            }
            if (kinds.Contains(FeedForwardKind.Moe))
            {
                var e = m.MoeOptions;
                var routing = e.Routing == MoeRouting.TokenChoice ? $"token choice, top-{e.TopK}, load-balancing weight {e.AuxLossWeight}" : "expert choice";
                AnsiConsole.MarkupLine($"[bold]MoE[/] E = {e.ExpertCount} experts of hidden width {m.HiddenDim}, {routing}, capacity factor {e.CapacityFactor}");
            }
            var table = new Table().AddColumn("part").AddColumn(new TableColumn("parameters").RightAligned());
            var groups = ParameterSummary.Of(model);
            foreach (var g in groups) table.AddRow(Markup.Escape(g.Part), g.Count.ToString("N0"));
            table.AddRow("[bold]total[/]", $"[bold]{groups.Sum(g => g.Count):N0}[/]");
            AnsiConsole.Write(table);
            var flops = FlopCounter.Of(m);
            AnsiConsole.MarkupLine($"[bold]Compute[/] {flops.ForwardFlopsPerToken:N0} forward FLOPs per token, {flops.ActiveParameters:N0} active parameters per token (details: peer flops)");
            AnsiConsole.MarkupLine("[bold]Presets[/]");
            foreach (var (name, description) in Presets.List()) AnsiConsole.MarkupLine($"  {name,-8} {Markup.Escape(description)}");
            return 0;
        });
        return command;
    }
}
