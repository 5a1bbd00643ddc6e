namespace PeerSharp.Serving;

/// <summary>Settings of <see cref="CompletionServer"/>, resolved once by the caller.</summary>
public sealed record ServerOptions
{
    /// <summary>The checkpoint to serve (its .json sidecar or base name).</summary>
    public required string Checkpoint { get; init; }

    /// <summary>Memory-map the expert tables read-only from the checkpoint instead of loading them.</summary>
    public bool MapTables { get; init; }

    /// <summary>Address to listen on: loopback unless asked otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>Port (0: any free one, see <see cref="CompletionServer.Address"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every /v1 request must carry <c>Authorization: Bearer</c> this key.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The name clients give as "model"; null: the checkpoint's file name.</summary>
    public string? ModelName { get; init; }

    /// <summary>Sequences decoded together, at most.</summary>
    public int MaxBatch { get; init; } = 16;

    /// <summary>Requests waiting beyond the batch, at most; more get 429.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>The most tokens one request may ask for.</summary>
    public int MaxTokens { get; init; } = 2048;

    /// <summary>The largest request body, bytes (413 beyond).</summary>
    public long MaxRequestBytes { get; init; } = 1 << 20;

    /// <summary>How long a shutdown waits for running requests before cancelling them.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new PeerSharpException($"port {Port} must be between 0 and 65535");
        if (MaxTokens < 1) throw new PeerSharpException($"max tokens {MaxTokens} must be at least 1");
        if (MaxRequestBytes < 1024) throw new PeerSharpException($"request size cap {MaxRequestBytes} bytes must be at least 1024");
        if (DrainTimeout < TimeSpan.Zero) throw new PeerSharpException($"drain timeout {DrainTimeout} must not be negative");
        if (ApiKey is { Length: 0 }) throw new PeerSharpException("the API key must not be empty");
        new Generation.BatchGeneratorOptions { MaxBatch = MaxBatch, MaxQueue = MaxQueue }.Validate();
    }
}
