using System.CommandLine;
using PeerSharp.Serving;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer serve`: the options of <see cref="CompletionServer"/> (src/PeerSharp.Serving), which does the work.</summary>
static class ServeCommand
{
    public static Command Create()
    {
        var defaults = new ServerOptions { Checkpoint = "" };
        var checkpoint = new Option<string>("--checkpoint") { Description = "Checkpoint (its .json sidecar or base name)", Required = true };
        var mapTables = new Option<bool>("--map-tables") { Description = "Memory-map the expert tables read-only from the checkpoint instead of loading them (skips the file's SHA-256 check)" };
        var host = new Option<string>("--host") { Description = "Address to listen on; anything but loopback exposes the server to the network", DefaultValueFactory = _ => defaults.Host };
        var port = new Option<int>("--port") { Description = "Port (0: any free one)", DefaultValueFactory = _ => defaults.Port };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on /v1 requests (default: the PEER_API_KEY environment variable, else none)" };
        var name = new Option<string?>("--model-name") { Description = "The model's name in /v1/models and requests (default: the checkpoint's run folder or file name)" };
        var batch = new Option<int>("--max-batch") { Description = "Requests decoded together, at most", DefaultValueFactory = _ => defaults.MaxBatch };
        var queue = new Option<int>("--max-queue") { Description = "Requests waiting beyond the batch, at most; more get 429 with Retry-After", DefaultValueFactory = _ => defaults.MaxQueue };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens one request may ask for", DefaultValueFactory = _ => defaults.MaxTokens };
        var maxBytes = new Option<long>("--max-request-bytes") { Description = "Largest request body (413 beyond)", DefaultValueFactory = _ => defaults.MaxRequestBytes };
        var drain = new Option<double>("--drain-seconds") { Description = "On Ctrl+C or SIGTERM, how long running requests may finish before they are cancelled", DefaultValueFactory = _ => defaults.DrainTimeout.TotalSeconds };
        var command = new Command("serve", "Serve a checkpoint over HTTP with the OpenAI completions API (docs/SERVING.md).")
        {
            checkpoint, mapTables, host, port, apiKey, name, batch, queue, maxTokens, maxBytes, drain,
        };
        command.SetAction(async (parse, _) =>
        {
            var options = new ServerOptions
            {
                Checkpoint = parse.GetValue(checkpoint)!,
                MapTables = parse.GetValue(mapTables),
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("PEER_API_KEY"),
                ModelName = parse.GetValue(name),
                MaxBatch = parse.GetValue(batch),
                MaxQueue = parse.GetValue(queue),
                MaxTokens = parse.GetValue(maxTokens),
                MaxRequestBytes = parse.GetValue(maxBytes),
                DrainTimeout = double.IsFinite(parse.GetValue(drain)) && parse.GetValue(drain) >= 0
                    ? TimeSpan.FromSeconds(parse.GetValue(drain))
                    : throw new PeerSharpException($"drain time {parse.GetValue(drain)} s must be a number of seconds, at least 0"),
            };
            await using var server = CompletionServer.Create(options);
            await server.StartAsync();
            Console.WriteLine($"serving '{server.ModelName}' at {server.Address} (POST /v1/completions; Ctrl+C stops)");
            await server.RunAsync();
            Console.WriteLine("stopped");
            return 0;
        });
        return command;
    }
}
