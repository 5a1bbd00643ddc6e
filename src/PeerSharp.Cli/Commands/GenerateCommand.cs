using System.CommandLine;
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Evaluation;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer generate`: continues a prompt with a trained model, streaming the text as it comes.</summary>
static class GenerateCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "Checkpoint (its .json sidecar or base name)", Required = true };
        var mapTables = new Option<bool>("--map-tables") { Description = "Memory-map the expert tables read-only from the checkpoint instead of loading them (skips the file's SHA-256 check)" };
        var prompt = new Option<string>("--prompt") { Description = "Text to continue", DefaultValueFactory = _ => "The " };
        var tokens = new Option<int>("--tokens") { Description = "Tokens to generate", DefaultValueFactory = _ => 300 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature (0: greedy)", DefaultValueFactory = _ => 0.8 };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens (0: all)", DefaultValueFactory = _ => 40 };
        var seed = new Option<long>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0 };
        var command = new Command("generate", "Generate text from a checkpoint.") { checkpoint, prompt, tokens, temperature, topK, seed, mapTables };
        command.SetAction(parse =>
        {
            var sampling = new SamplingOptions(parse.GetValue(tokens), parse.GetValue(temperature), parse.GetValue(topK), parse.GetValue(seed));
            sampling.Validate();   // before the model loads
            var (model, info) = Checkpoint.LoadModel(parse.GetValue(checkpoint)!, parse.GetValue(mapTables));
            using var _ = model;
            var text = parse.GetValue(prompt)!;
            Console.Write(text);
            TextGenerator.Generate(model, Tokenizers.Create(info.Config.Model.Tokenizer), text, sampling, Console.Write);
            Console.WriteLine();
            return 0;
        });
        return command;
    }
}
