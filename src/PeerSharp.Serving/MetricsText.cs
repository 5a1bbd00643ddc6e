using System.Globalization;
using System.Text;
using PeerSharp.Generation;

namespace PeerSharp.Serving;

/// <summary>The generator's statistics in the Prometheus text format (version 0.0.4), written by hand.</summary>
public static class MetricsText
{
    /// <summary>Every metric of <paramref name="generator"/>.</summary>
    public static string Write(BatchGenerator generator, long httpRequests)
    {
        var text = new StringBuilder();
        var statistics = generator.Statistics;
        Counter(text, "peer_http_requests_total", "HTTP requests to /v1 endpoints.", httpRequests);
        Counter(text, "peer_requests_total", "Completion requests accepted.", statistics.Requests);
        Counter(text, "peer_requests_rejected_total", "Completion requests refused with 429 (batch and queue full).", statistics.Rejected);
        text.Append("# HELP peer_requests_finished_total Completions ended, by finish reason.\n# TYPE peer_requests_finished_total counter\n");
        foreach (var reason in Enum.GetValues<FinishReason>())
            text.Append(CultureInfo.InvariantCulture, $"peer_requests_finished_total{{reason=\"{reason.ToString().ToLowerInvariant()}\"}} {statistics.Finished(reason)}\n");
        Counter(text, "peer_prompt_tokens_total", "Prompt tokens run.", statistics.PromptTokens);
        Counter(text, "peer_generated_tokens_total", "Tokens generated.", statistics.GeneratedTokens);
        Counter(text, "peer_decode_steps_total", "Batched decoding steps.", statistics.Steps);
        Gauge(text, "peer_queue_length", "Requests waiting for a place in the batch.", generator.QueueLength);
        Gauge(text, "peer_running_requests", "Requests in the batch.", generator.Running);
        Histogram(text, "peer_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.", statistics.TimeToFirstToken);
        Histogram(text, "peer_token_latency_seconds", "Seconds between two tokens of one completion.", statistics.TokenLatency);
        Histogram(text, "peer_batch_size", "Sequences decoded together per step.", statistics.BatchSize);
        text.Append("# HELP peer_expert_selections_total Expert selections of each PEER or PKM layer over served traffic.\n# TYPE peer_expert_selections_total counter\n");
        foreach (var layer in generator.Experts) text.Append(CultureInfo.InvariantCulture, $"peer_expert_selections_total{{layer=\"{layer.Layer}\"}} {layer.Selections}\n");
        text.Append("# HELP peer_experts_used Distinct experts of each layer selected at least once.\n# TYPE peer_experts_used gauge\n");
        foreach (var layer in generator.Experts) text.Append(CultureInfo.InvariantCulture, $"peer_experts_used{{layer=\"{layer.Layer}\"}} {layer.Distinct}\n");
        text.Append("# HELP peer_expert_usage Fraction of each layer's experts selected at least once.\n# TYPE peer_expert_usage gauge\n");
        foreach (var layer in generator.Experts) text.Append(CultureInfo.InvariantCulture, $"peer_expert_usage{{layer=\"{layer.Layer}\"}} {(double)layer.Distinct / layer.ExpertCount:R}\n");
        return text.ToString();
    }

    static void Counter(StringBuilder text, string name, string help, long value) =>
        text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");

    static void Gauge(StringBuilder text, string name, string help, long value) =>
        text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");

    static void Histogram(StringBuilder text, string name, string help, Generation.Histogram histogram)
    {
        var (cumulative, count, sum) = histogram.Snapshot();
        text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} histogram\n");
        for (int i = 0; i < cumulative.Length; i++)
            text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"{histogram.UpperBounds[i]:R}\"}} {cumulative[i]}\n");
        text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum:R}\n{name}_count {count}\n");
    }
}
