using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PeerSharp.Checkpoints;
using PeerSharp.Data;
using PeerSharp.Generation;
using PeerSharp.Model;

namespace PeerSharp.Serving;

/// <summary>
/// `peer serve` (docs/SERVING.md): an OpenAI-compatible completion server on Kestrel over one
/// <see cref="BatchGenerator"/>. POST /v1/completions (streamed as server-sent events or whole), GET /v1/models,
/// GET /health (200 once the model is loaded, 503 before) and GET /metrics (Prometheus text). The model loads
/// after the server has started listening; a shutdown (Ctrl+C, SIGTERM) refuses new requests with 503 and lets the
/// running ones finish for up to <see cref="ServerOptions.DrainTimeout"/>.
/// </summary>
public sealed class CompletionServer : IAsyncDisposable
{
    readonly WebApplication _app;
    readonly ServerOptions _options;
    readonly Func<(TransformerLM Model, ITokenizer Tokenizer)> _load;
    readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    TransformerLM? _model;
    ITokenizer? _tokenizer;
    BatchGenerator? _generator;
    Task? _loading;
    long _httpRequests;
    volatile bool _draining;

    CompletionServer(ServerOptions options, Func<(TransformerLM, ITokenizer)> load)
    {
        options.Validate();
        (_options, _load) = (options, load);
        ModelName = options.ModelName ?? DefaultModelName(options.Checkpoint);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = options.MaxRequestBytes);
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.DrainTimeout);
        _app = builder.Build();
        _app.Lifetime.ApplicationStopping.Register(() => _draining = true);
        _app.Use(Guard);
        _app.MapGet("/health", () => _generator is null ? Results.Json(new { status = "loading" }, statusCode: 503) : Results.Json(new { status = "ok" }));
        _app.MapGet("/metrics", () => _generator is null
            ? Results.Text("", "text/plain; version=0.0.4", statusCode: 503)
            : Results.Text(MetricsText.Write(_generator, Interlocked.Read(ref _httpRequests)), "text/plain; version=0.0.4"));
        _app.MapGet("/v1/models", () => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new JsonObject { ["id"] = ModelName, ["object"] = "model", ["created"] = _created, ["owned_by"] = "peersharp" }),
        }));
        _app.MapPost("/v1/completions", Complete);
        _app.MapPost("/v1/chat/completions", () => Error(new ApiError(404,
            "this server serves a base language model without a chat format; use /v1/completions (docs/SERVING.md)", code: "unknown_url")));
        _app.MapFallback(() => Error(new ApiError(404, "unknown endpoint; this server has POST /v1/completions, GET /v1/models, GET /health and GET /metrics", code: "unknown_url")));
    }

    /// <summary>A server for a checkpoint, loaded as `peer generate` loads it.</summary>
    public static CompletionServer Create(ServerOptions options) => new(options, () =>
    {
        var (model, info) = Checkpoint.LoadModel(options.Checkpoint, options.MapTables);
        return (model, Tokenizers.Create(info.Config.Model.Tokenizer));
    });

    /// <summary>A server for a model the caller builds (tests: a fresh tiny model); the server disposes it.</summary>
    public static CompletionServer Create(ServerOptions options, Func<(TransformerLM Model, ITokenizer Tokenizer)> load) => new(options, load);

    /// <summary>The name clients give as "model".</summary>
    public string ModelName { get; }

    /// <summary>Where it listens (the real port when asked for port 0), once started.</summary>
    public Uri Address => new(_app.Urls.First());

    /// <summary>Starts listening, then loads the model; the task completes when the model is loaded.</summary>
    public async Task StartAsync()
    {
        await _app.StartAsync().ConfigureAwait(false);
        _loading = Task.Run(() =>
        {
            var (model, tokenizer) = _load();
            (_model, _tokenizer) = (model, tokenizer);
            _generator = new BatchGenerator(model, tokenizer, new BatchGeneratorOptions { MaxBatch = _options.MaxBatch, MaxQueue = _options.MaxQueue });
        });
        await _loading.ConfigureAwait(false);
    }

    /// <summary>Serves until Ctrl+C, SIGTERM or <paramref name="stop"/>, then drains the running requests.</summary>
    public async Task RunAsync(CancellationToken stop = default)
    {
        using var registration = stop.Register(() => _app.Lifetime.StopApplication());
        await _app.WaitForShutdownAsync().ConfigureAwait(false);
    }

    /// <summary>Stops: new requests get 503, running ones finish for up to the drain timeout, the rest are cancelled.</summary>
    public async Task StopAsync()
    {
        _draining = true;
        if (_generator is not null) await _generator.DrainAsync(_options.DrainTimeout).ConfigureAwait(false);
        await _app.StopAsync().ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync().ConfigureAwait(false);
        if (_loading is not null) await _loading.ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
        _generator?.Dispose();
        _model?.Dispose();
    }

    static string DefaultModelName(string checkpoint)
    {
        var name = Path.GetFileNameWithoutExtension(checkpoint.EndsWith(".json", StringComparison.Ordinal) ? checkpoint[..^5] : checkpoint);
        var folder = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(checkpoint)));
        return name == "checkpoint" && !string.IsNullOrEmpty(folder) ? folder : name;
    }

    /// <summary>/v1 requests: the API key, readiness and the drain; errors of ours become OpenAI error bodies.</summary>
    async Task Guard(HttpContext context, RequestDelegate next)
    {
        try
        {
            if (context.Request.Path.StartsWithSegments("/v1"))
            {
                Interlocked.Increment(ref _httpRequests);
                if (_options.ApiKey is { } key && !Authorized(context.Request.Headers.Authorization.ToString(), key))
                    throw new ApiError(401, "Incorrect API key provided: send 'Authorization: Bearer <key>'", code: "invalid_api_key");
                if (_draining) throw new ApiError(503, "the server is shutting down");
                if (_generator is null) throw new ApiError(503, "the model is still loading; retry when GET /health answers 200");
            }
            await next(context).ConfigureAwait(false);
        }
        catch (ApiError error) when (!context.Response.HasStarted)
        {
            await Error(error).ExecuteAsync(context).ConfigureAwait(false);
        }
    }

    static bool Authorized(string header, string key) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header), Encoding.UTF8.GetBytes("Bearer " + key));

    static IResult Error(ApiError error) => Results.Json(error.Body(), statusCode: error.Status);

    async Task Complete(HttpContext context)
    {
        var generator = _generator!;
        var parameters = CompletionParameters.Parse(await ReadBody(context.Request).ConfigureAwait(false), _options.MaxTokens);
        if (parameters.Model is { } model && model != ModelName)
            throw new ApiError(404, $"The model '{model}' does not exist; this server serves '{ModelName}'", "model", "model_not_found");
        var prompt = _tokenizer!.Encode(parameters.Prompt.Length == 0 ? "\n" : parameters.Prompt);
        if (prompt.Length > generator.ContextLength)
            throw new ApiError(400, $"This model's maximum context length is {generator.ContextLength} tokens, however your prompt has {prompt.Length} tokens", "prompt", "context_length_exceeded");
        var request = new CompletionRequest(prompt, parameters.Sampling, parameters.Stop);
        if (!generator.TrySubmit(request, context.RequestAborted, out var completion))
        {
            if (_draining) throw new ApiError(503, "the server is shutting down");
            context.Response.Headers.RetryAfter = "1";
            throw new ApiError(429, $"the server is busy: {_options.MaxBatch} requests are running and {_options.MaxQueue} waiting; retry later", code: "rate_limit_exceeded");
        }
        var id = "cmpl-" + Guid.NewGuid().ToString("N")[..24];
        if (parameters.Stream) await Stream(context, completion, id, parameters.IncludeUsage).ConfigureAwait(false);
        else
        {
            CompletionResult result;
            try
            {
                result = await completion.Result.ConfigureAwait(false);
            }
            catch (Exception error) when (error is not OperationCanceledException)
            {
                throw new ApiError(500, "generation failed: " + error.Message);
            }
            await Results.Json(Chunk(id, result.Text, Reason(result.Reason), Usage(result))).ExecuteAsync(context).ConfigureAwait(false);
        }
    }

    static async Task<JsonElement> ReadBody(HttpRequest request)
    {
        try
        {
            using var document = await JsonDocument.ParseAsync(request.Body, cancellationToken: request.HttpContext.RequestAborted).ConfigureAwait(false);
            return document.RootElement.Clone();
        }
        catch (JsonException)
        {
            throw new ApiError(400, "We could not parse the JSON body of your request: it must be one JSON object");
        }
        catch (BadHttpRequestException error) when (error.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiError(413, "the request body is larger than the server's cap", code: "request_too_large");
        }
    }

    async Task Stream(HttpContext context, Completion completion, string id, bool includeUsage)
    {
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        var cancel = context.RequestAborted;
        await response.StartAsync(cancel).ConfigureAwait(false);
        try
        {
            await foreach (var piece in completion.Pieces.ReadAllAsync(cancel).ConfigureAwait(false))
                await Event(response, Chunk(id, piece, null, null), cancel).ConfigureAwait(false);
            var result = await completion.Result.ConfigureAwait(false);
            await Event(response, Chunk(id, "", Reason(result.Reason), null), cancel).ConfigureAwait(false);
            if (includeUsage)
            {
                var usage = Chunk(id, "", null, Usage(result));
                usage["choices"] = new JsonArray();
                await Event(response, usage, cancel).ConfigureAwait(false);
            }
        }
        catch (Exception error) when (error is not OperationCanceledException && !cancel.IsCancellationRequested)
        {
            await Event(response, new ApiError(500, "generation failed: " + error.Message).Body(), cancel).ConfigureAwait(false);
        }
        await response.WriteAsync("data: [DONE]\n\n", cancel).ConfigureAwait(false);
    }

    static async Task Event(HttpResponse response, JsonObject data, CancellationToken cancel)
    {
        await response.WriteAsync($"data: {data.ToJsonString()}\n\n", cancel).ConfigureAwait(false);
        await response.Body.FlushAsync(cancel).ConfigureAwait(false);
    }

    JsonObject Chunk(string id, string text, string? finishReason, JsonObject? usage)
    {
        var chunk = new JsonObject
        {
            ["id"] = id,
            ["object"] = "text_completion",
            ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["model"] = ModelName,
            ["choices"] = new JsonArray(new JsonObject { ["text"] = text, ["index"] = 0, ["logprobs"] = null, ["finish_reason"] = finishReason }),
        };
        if (usage is not null) chunk["usage"] = usage;
        return chunk;
    }

    static JsonObject Usage(CompletionResult result) => new()
    {
        ["prompt_tokens"] = result.PromptTokens,
        ["completion_tokens"] = result.CompletionTokens,
        ["total_tokens"] = result.PromptTokens + result.CompletionTokens,
    };

    static string? Reason(FinishReason reason) => reason switch
    {
        FinishReason.Length => "length",
        FinishReason.Stop => "stop",
        _ => null,
    };
}
