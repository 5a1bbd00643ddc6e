using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using OpenAI;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Model;
using PeerSharp.Serving;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Serving;

/// <summary>`peer serve` on a real Kestrel on an ephemeral loopback port, with a freshly initialised tiny model, driven by HttpClient.</summary>
public class ServingTests
{
    /// <summary>A started server and a client for it; disposing stops both.</summary>
    sealed class Running(CompletionServer server) : IAsyncDisposable
    {
        public CompletionServer Server => server;
        public HttpClient Client { get; } = new() { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await server.DisposeAsync();
        }
    }

    static async Task<Running> Start(Func<ServerOptions, ServerOptions>? configure = null)
    {
        var options = new ServerOptions { Checkpoint = "tiny", Port = 0, MaxTokens = 400, MaxRequestBytes = 4096, DrainTimeout = TimeSpan.FromSeconds(20) };
        var server = CompletionServer.Create(configure?.Invoke(options) ?? options, () =>
        {
            manual_seed(9);
            var model = new TransformerLM(Presets.Get("tiny").Model);
            return (model, Tokenizers.Create(model.Config.Tokenizer));
        });
        await server.StartAsync();
        return new Running(server);
    }

    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    static async Task<JsonObject> Complete(HttpClient client, string body)
    {
        using var response = await client.PostAsync("/v1/completions", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>The text of a streamed completion, its finish reason and the data lines, the last of which must be [DONE].</summary>
    static async Task<(string Text, string? Reason, List<string> Events)> Stream(HttpClient client, string body)
    {
        using var response = await client.PostAsync("/v1/completions", Json(body));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events.SkipLast(1).Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        var choices = chunks.SelectMany(c => c["choices"]!.AsArray()).ToList();
        return (string.Concat(choices.Select(c => (string)c!["text"]!)), choices.Select(c => (string?)c!["finish_reason"]).LastOrDefault(r => r is not null), events);
    }

    [Fact]
    public async Task StreamedChunksAddUpToTheCompletionForTheSameSeed()
    {
        await using var running = await Start();
        var client = running.Client;
        Assert.Equal("ok", (string)JsonNode.Parse(await client.GetStringAsync("/health"))!["status"]!);
        var models = JsonNode.Parse(await client.GetStringAsync("/v1/models"))!;
        Assert.Equal("tiny", (string)models["data"]![0]!["id"]!);

        var whole = await Complete(client, """{"model":"tiny","prompt":"The ","max_tokens":50,"seed":7,"temperature":0.9,"top_p":0.9,"top_k":20}""");
        Assert.Equal("text_completion", (string)whole["object"]!);
        Assert.Equal("length", (string)whole["choices"]![0]!["finish_reason"]!);
        Assert.Equal(50, (int)whole["usage"]!["completion_tokens"]!);
        Assert.Equal(4 + 50, (int)whole["usage"]!["total_tokens"]!);
        var (text, reason, _) = await Stream(client, """{"prompt":"The ","max_tokens":50,"seed":7,"temperature":0.9,"top_p":0.9,"top_k":20,"stream":true}""");
        Assert.Equal((string)whole["choices"]![0]!["text"]!, text);
        Assert.Equal("length", reason);

        var stop = text.Substring(20, 2);
        var stopped = await Complete(client, $$"""{"prompt":"The ","max_tokens":50,"seed":7,"temperature":0.9,"top_p":0.9,"top_k":20,"stop":[{{JsonSerializer.Serialize(stop)}}]}""");
        Assert.Equal("stop", (string)stopped["choices"]![0]!["finish_reason"]!);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], (string)stopped["choices"]![0]!["text"]!);
    }

    [Fact]
    public async Task ConcurrentRequestsGetWhatTheyGetAlone()
    {
        await using var running = await Start();
        var bodies = Enumerable.Range(0, 6).Select(i => $$"""{"prompt":"Request {{i}}: ","max_tokens":{{30 + 7 * i}},"seed":{{i}},"stream":{{(i % 2 == 0 ? "true" : "false")}}}""").ToList();
        async Task<string> One(string body) => body.Contains("\"stream\":true")
            ? (await Stream(running.Client, body)).Text
            : (string)(await Complete(running.Client, body))["choices"]![0]!["text"]!;
        var alone = new List<string>();
        foreach (var body in bodies) alone.Add(await One(body));
        var together = await Task.WhenAll(bodies.Select(One));
        Assert.Equal(alone, together);
        var metrics = await running.Client.GetStringAsync("/metrics");
        var batched = Regex.Matches(metrics, @"^peer_batch_size_bucket\{le=""1""\} (\d+)$", RegexOptions.Multiline)[0].Groups[1].Value;
        var steps = Regex.Match(metrics, @"^peer_decode_steps_total (\d+)$", RegexOptions.Multiline).Groups[1].Value;
        Assert.True(long.Parse(batched) < long.Parse(steps), "no step decoded more than one request");
    }

    public static TheoryData<string, int, string?> BadRequests => new()
    {
        { """{"prompt":"a",""", 400, null },
        { """["a"]""", 400, null },
        { """{"max_tokens":5}""", 400, "prompt" },
        { """{"prompt":5}""", 400, "prompt" },
        { """{"prompt":"a","max_tokens":"5"}""", 400, "max_tokens" },
        { """{"prompt":"a","max_tokens":401}""", 400, "max_tokens" },
        { """{"prompt":"a","max_tokens":-1}""", 400, "max_tokens" },
        { """{"prompt":"a","temperature":2.5}""", 400, "temperature" },
        { """{"prompt":"a","temperature":NaN}""", 400, null },
        { """{"prompt":"a","temperature":"NaN"}""", 400, "temperature" },
        { """{"prompt":"a","top_p":1.5}""", 400, "top_p" },
        { """{"prompt":"a","n":2}""", 400, "n" },
        { """{"prompt":"a","stop":[1]}""", 400, "stop" },
        { """{"prompt":"a","logprobs":3}""", 400, "logprobs" },
        { """{"prompt":"a","frobnicate":true}""", 400, "frobnicate" },
        { """{"prompt":"a","model":"gpt-4"}""", 404, "model" },
        { """{"prompt":"This prompt is longer than thirty-two bytes of context"}""", 400, "prompt" },
        { $$"""{"prompt":"{{new string('x', 5000)}}"}""", 413, null },
    };

    [Fact]
    public async Task EveryBadRequestGetsAnOpenAiErrorAndTheServerGoesOn()
    {
        await using var running = await Start();
        foreach (var (body, status, param) in BadRequests.Select(row => ((string)row[0], (int)row[1], (string?)row[2])))
        {
            using var response = await running.Client.PostAsync("/v1/completions", Json(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True((int)response.StatusCode == status, $"{body[..Math.Min(60, body.Length)]}: {(int)response.StatusCode} {text}");
            var error = JsonNode.Parse(text)!["error"]!;
            Assert.False(string.IsNullOrEmpty((string?)error["message"]), text);
            Assert.Equal(param, (string?)error["param"]);
        }
        using (var chat = await running.Client.PostAsync("/v1/chat/completions", Json("{}")))
            Assert.Equal(HttpStatusCode.NotFound, chat.StatusCode);
        Assert.Equal("length", (string)(await Complete(running.Client, """{"prompt":"a","max_tokens":3}"""))["choices"]![0]!["finish_reason"]!);
    }

    [Fact]
    public async Task AFullQueueAnswers429WithRetryAfterAndADisconnectedClientLeavesTheBatch()
    {
        // A request that cannot finish before its client goes away, however loaded the machine.
        await using var running = await Start(o => o with { MaxBatch = 1, MaxQueue = 0, MaxTokens = 1_000_000 });
        var client = running.Client;
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Json("""{"prompt":"a","max_tokens":1000000,"stream":true}""") })
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
            using var refused = await client.PostAsync("/v1/completions", Json("""{"prompt":"b","max_tokens":3}"""));
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            Assert.Equal("rate_limit_error", (string)JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["type"]!);
        }   // the client goes away mid-stream
        string metrics = "";
        for (int i = 0; i < 200 && !metrics.Contains("peer_requests_finished_total{reason=\"cancelled\"} 1"); i++)
        {
            await Task.Delay(50);
            metrics = await client.GetStringAsync("/metrics");
        }
        Assert.Contains("peer_requests_finished_total{reason=\"cancelled\"} 1", metrics);
        Assert.Contains("peer_running_requests 0", metrics);
        Assert.Equal(3, (int)(await Complete(client, """{"prompt":"b","max_tokens":3}"""))["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task MetricsAreValidPrometheusText()
    {
        await using var running = await Start();
        await Complete(running.Client, """{"prompt":"a","max_tokens":5}""");
        var metrics = await running.Client.GetStringAsync("/metrics");
        var sample = new Regex(@"^[a-z_]+(\{[a-z_]+=""[^""]*""\})? -?[0-9.eE+\-]+(Inf)?$");
        foreach (var line in metrics.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            Assert.True(line.StartsWith("# HELP ") || line.StartsWith("# TYPE ") || sample.IsMatch(line), $"not Prometheus text: {line}");
        Assert.Contains("peer_generated_tokens_total 5", metrics);
        Assert.Matches(@"peer_expert_selections_total\{layer=""[a-z0-9.]+""\} [1-9]", metrics);
        Assert.Contains("peer_time_to_first_token_seconds_count 1", metrics);
    }

    [Fact]
    public async Task AnApiKeyIsRequiredWhenSet()
    {
        await using var running = await Start(o => o with { ApiKey = "secret" });
        using (var refused = await running.Client.PostAsync("/v1/completions", Json("""{"prompt":"a","max_tokens":2}""")))
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        running.Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "secret");
        await Complete(running.Client, """{"prompt":"a","max_tokens":2}""");
    }

    [Fact]
    public async Task ShutdownLetsRunningRequestsFinishAndRefusesNewOnes()
    {
        await using var running = await Start();
        var inFlight = Complete(running.Client, """{"prompt":"a","max_tokens":300}""");
        while (!(await running.Client.GetStringAsync("/metrics")).Contains("peer_running_requests 1")) await Task.Delay(10);
        using var stop = new CancellationTokenSource();
        var run = running.Server.RunAsync(stop.Token);
        stop.Cancel();
        var result = await inFlight;
        Assert.Equal("length", (string)result["choices"]![0]!["finish_reason"]!);
        Assert.Equal(300, (int)result["usage"]!["completion_tokens"]!);
        await run;
        await Assert.ThrowsAsync<HttpRequestException>(() => running.Client.GetStringAsync("/health"));
    }

    [Fact]
    public async Task TheOfficialOpenAiClientListsTheModelAndCompletesThroughItsPipelineWithItsKey()
    {
        await using var running = await Start(o => o with { ApiKey = "sk-peer-test" });
        var options = new OpenAIClientOptions { Endpoint = new Uri(running.Server.Address, "/v1") };
        var client = new OpenAIClient(new ApiKeyCredential("sk-peer-test"), options);
        var models = await client.GetOpenAIModelClient().GetModelsAsync();
        Assert.Contains(models.Value, m => m.Id == "tiny");

        // OpenAI 2.15.0 keeps its legacy completions client internal (OpenAI.LegacyCompletions.LegacyCompletionClient),
        // so completions go through the SDK's public protocol layer: the client's own pipeline, which adds its
        // Authorization header, retries and reads the response as it does for every call.
        var pipeline = client.GetOpenAIModelClient().Pipeline;
        using var message = pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(running.Server.Address, "/v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString("""{ "model": "tiny", "prompt": "It was", "max_tokens": 6, "seed": 3 }"""));
        await pipeline.SendAsync(message);
        Assert.Equal(200, message.Response!.Status);
        var body = JsonNode.Parse(message.Response.Content.ToString())!.AsObject();
        Assert.Equal("text_completion", (string)body["object"]!);
        Assert.Equal(6, (int)body["usage"]!["completion_tokens"]!);
        var viaHttp = await Complete(Authorized(running.Client, "sk-peer-test"), """{ "model": "tiny", "prompt": "It was", "max_tokens": 6, "seed": 3 }""");
        Assert.Equal((string)viaHttp["choices"]![0]!["text"]!, (string)body["choices"]![0]!["text"]!);

        // A wrong key: the SDK turns the 401 and its OpenAI-style error body into its own exception.
        var stranger = new OpenAIClient(new ApiKeyCredential("sk-wrong"), options);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => stranger.GetOpenAIModelClient().GetModelsAsync());
        Assert.Equal(401, e.Status);
    }

    static HttpClient Authorized(HttpClient client, string key)
    {
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }
}
