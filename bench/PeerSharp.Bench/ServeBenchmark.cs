using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace PeerSharp.Benchmarks;

/// <summary>One load level against `peer serve`: concurrent streaming clients, each asking for the same number of tokens.</summary>
public sealed record ServeLoadResult(string Checkpoint, bool MapTables, int Clients, int Tokens, int Completed, int Errors, int Rejected,
                                     double Seconds, double TokensPerSecond, double FirstTokenP50, double FirstTokenP99,
                                     double TokenP50, double TokenP99, long PeakResidentBytes);

/// <summary>
/// `peer bench --serve`: starts `peer serve` on a free loopback port as a child process, drives it with 1, 4, 16 and 64
/// concurrent streaming clients (one request each per round, bounded in count and time), and reports aggregate
/// tokens/s, time to first token and per-token latency percentiles, errors and the server's peak resident memory.
/// </summary>
public static class ServeBenchmark
{
    /// <summary>Runs every load level against one checkpoint.</summary>
    public static IReadOnlyList<ServeLoadResult> Run(string checkpoint, bool mapTables, IReadOnlyList<int> clientCounts, int tokens, int maxBatch)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var argument in new[] { "serve", "--checkpoint", checkpoint, "--port", "0", "--max-batch", maxBatch.ToString(CultureInfo.InvariantCulture),
                                         "--max-queue", "64", "--max-tokens", tokens.ToString(CultureInfo.InvariantCulture) })
            start.ArgumentList.Add(argument);
        if (mapTables) start.ArgumentList.Add("--map-tables");
        using var server = Process.Start(start)!;
        try
        {
            var line = server.StandardOutput.ReadLine() ?? throw new PeerSharpException($"peer serve exited with code {(server.WaitForExit(5000) ? server.ExitCode : -1)} before listening");
            var address = new Uri(line.Split(" at ")[1].Split(' ')[0]);
            using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(5) };
            Level(client, 2, 16);   // warm-up: JIT and first allocations, not reported
            return [.. clientCounts.Select(clients => Level(client, clients, tokens) with { Checkpoint = checkpoint, MapTables = mapTables, PeakResidentBytes = PeakResident(server.Id) })];
        }
        finally
        {
            server.Kill();
            server.WaitForExit();
        }
    }

    static ServeLoadResult Level(HttpClient client, int clients, int tokens)
    {
        var firstTokens = new List<double>();
        var gaps = new List<double>();
        int completed = 0, errors = 0, rejected = 0, generated = 0;
        var clock = Stopwatch.StartNew();
        Task.WaitAll([.. Enumerable.Range(0, clients).Select(i => Task.Run(async () =>
        {
            var body = $$"""{"prompt":"The ","max_tokens":{{tokens}},"seed":{{i}},"stream":true}""";
            var sent = Stopwatch.GetTimestamp();
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                if ((int)response.StatusCode == 429)
                {
                    Interlocked.Increment(ref rejected);
                    return;
                }
                response.EnsureSuccessStatusCode();
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                long last = sent;
                var mine = new List<double>();
                double first = -1;
                bool done = false;
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                    if (line == "data: [DONE]") { done = true; break; }
                    if (!line.Contains("\"finish_reason\":null", StringComparison.Ordinal)) continue;   // the closing chunk carries no text
                    var now = Stopwatch.GetTimestamp();
                    if (first < 0) first = Stopwatch.GetElapsedTime(sent, now).TotalSeconds;
                    else mine.Add(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
                    last = now;
                }
                if (!done) throw new IOException("the stream ended without [DONE]");
                lock (gaps)
                {
                    firstTokens.Add(first);
                    gaps.AddRange(mine);
                    completed++;
                    generated += tokens;
                }
            }
            catch (Exception)
            {
                Interlocked.Increment(ref errors);
            }
        }))]);
        var seconds = clock.Elapsed.TotalSeconds;
        return new ServeLoadResult("", false, clients, tokens, completed, errors, rejected, seconds, generated / seconds,
                                   Percentile(firstTokens, 0.5), Percentile(firstTokens, 0.99), Percentile(gaps, 0.5), Percentile(gaps, 0.99), 0);
    }

    static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
    }

    static long PeakResident(int process)
    {
        var line = File.ReadLines($"/proc/{process}/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>The results as a markdown table.</summary>
    public static string Table(IEnumerable<ServeLoadResult> results)
    {
        var text = new StringBuilder("| checkpoint | tables | clients | tokens each | completed | errors | 429 | aggregate tokens/s | TTFT p50 (ms) | TTFT p99 (ms) | per-token p50 (ms) | per-token p99 (ms) | server peak RSS (MiB) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        foreach (var r in results)
            text.Append(CultureInfo.InvariantCulture,
                $"| {r.Checkpoint} | {(r.MapTables ? "mapped" : "loaded")} | {r.Clients} | {r.Tokens} | {r.Completed} | {r.Errors} | {r.Rejected} | {r.TokensPerSecond:F0} | {r.FirstTokenP50 * 1000:F0} | {r.FirstTokenP99 * 1000:F0} | {r.TokenP50 * 1000:F1} | {r.TokenP99 * 1000:F1} | {r.PeakResidentBytes / (1024.0 * 1024):F0} |\n");
        return text.ToString();
    }
}
