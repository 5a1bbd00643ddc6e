// Continues a prompt with a PeerSharp checkpoint (written by `peer train` or PeerSharp.Training.TrainingRun).
// dotnet run -- CHECKPOINT [PROMPT] [TOKENS]
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Evaluation;

var (model, info) = Checkpoint.LoadModel(args.Length > 0 ? args[0] : "runs/default/checkpoint.json");
var tokenizer = Tokenizers.Create(info.Config.Model.Tokenizer);
var prompt = args.Length > 1 ? args[1] : "It was a dark night";
Console.Write(prompt);
TextGenerator.Generate(model, tokenizer, prompt, new SamplingOptions(args.Length > 2 ? int.Parse(args[2]) : 200), Console.Write);
Console.WriteLine();
