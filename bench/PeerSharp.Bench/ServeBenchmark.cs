using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace PeerSharp.Benchmarks;

/// <summary>One load level against `peer serve`: concurrent streaming clients, each asking for the same number of tokens.</summary>
/// <remarks>
/// A level runs <c>Rounds</c> times; counts are summed over the rounds, the latency percentiles pool every request's, and
/// the aggregate tokens/s is the median round's, because one 128-token request alone lasts under a second and a single
/// round of it varies by 2-3x. <c>ExpectedRejected</c> is what the documented admission rule predicts: per round, every
/// client beyond the batch and the queue gets 429.
/// </remarks>
public sealed record ServeLoadResult(string Checkpoint, bool MapTables, int Clients, int Tokens, int Rounds, int Completed, int Errors, int Rejected,
                                     int ExpectedRejected, double Seconds, double TokensPerSecond, double FirstTokenP50, double FirstTokenP99,
                                     double TokenP50, double TokenP99, long PeakResidentBytes);

/// <summary>
/// `peer bench --serve`: starts `peer serve` on a free loopback port as a child process, drives it with 1, 4, 16 and 64
/// concurrent streaming clients (one request each per round, bounded in count and time), and reports aggregate
/// tokens/s, time to first token and per-token latency percentiles, errors and the server's peak resident memory.
/// </summary>
public static class ServeBenchmark
{
    /// <summary>Runs every load level, <paramref name="rounds"/> times each, against one checkpoint served with
    /// <paramref name="maxBatch"/> decoding and <paramref name="maxQueue"/> waiting.</summary>
    public static IReadOnlyList<ServeLoadResult> Run(string checkpoint, bool mapTables, IReadOnlyList<int> clientCounts, int tokens, int maxBatch, int maxQueue, int rounds)
    {
        if (rounds < 1) throw new PeerSharpException($"the serving benchmark needs at least one round per level, not {rounds}");
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var argument in new[] { "serve", "--checkpoint", checkpoint, "--port", "0", "--max-batch", maxBatch.ToString(CultureInfo.InvariantCulture),
                                         "--max-queue", maxQueue.ToString(CultureInfo.InvariantCulture), "--max-tokens", tokens.ToString(CultureInfo.InvariantCulture) })
            start.ArgumentList.Add(argument);
        if (mapTables) start.ArgumentList.Add("--map-tables");
        using var server = Process.Start(start)!;
        try
        {
            var line = server.StandardOutput.ReadLine() ?? throw new PeerSharpException($"peer serve exited with code {(server.WaitForExit(5000) ? server.ExitCode : -1)} before listening");
            var address = new Uri(line.Split(" at ")[1].Split(' ')[0]);
            using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(5) };
            Round(client, 2, 16);   // warm-up: JIT and first allocations, not reported
            return [.. clientCounts.Select(clients => Level(client, clients, tokens, rounds) with
            {
                Checkpoint = checkpoint, MapTables = mapTables, PeakResidentBytes = PeakResident(server.Id),
                ExpectedRejected = rounds * Math.Max(0, clients - maxBatch - maxQueue),
            })];
        }
        finally
        {
            server.Kill();
            server.WaitForExit();
        }
    }

    static ServeLoadResult Level(HttpClient client, int clients, int tokens, int rounds)
    {
        var all = Enumerable.Range(0, rounds).Select(_ => Round(client, clients, tokens)).ToList();
        var median = all.OrderBy(r => r.TokensPerSecond).ElementAt(rounds / 2);
        return new ServeLoadResult("", false, clients, tokens, rounds, all.Sum(r => r.Completed), all.Sum(r => r.Errors), all.Sum(r => r.Rejected), 0,
                                   all.Sum(r => r.Seconds), median.TokensPerSecond,
                                   Percentile(all.SelectMany(r => r.FirstTokens), 0.5), Percentile(all.SelectMany(r => r.FirstTokens), 0.99),
                                   Percentile(all.SelectMany(r => r.Gaps), 0.5), Percentile(all.SelectMany(r => r.Gaps), 0.99), 0);
    }

    sealed record RoundResult(int Completed, int Errors, int Rejected, double Seconds, double TokensPerSecond, List<double> FirstTokens, List<double> Gaps);

    /// <summary>One round of a level: every client sends one streaming request at once and reads it to the end.</summary>
    static RoundResult Round(HttpClient client, int clients, int tokens)
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
        return new RoundResult(completed, errors, rejected, seconds, generated / seconds, firstTokens, gaps);
    }

    static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToList();
        if (sorted.Count == 0) return double.NaN;
        return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
    }

    static long PeakResident(int process)
    {
        var line = File.ReadLines($"/proc/{process}/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>The results as a markdown table, then each served model's scaling: aggregate tokens/s at each level over one client's.</summary>
    public static string Table(IReadOnlyList<ServeLoadResult> results)
    {
        var text = new StringBuilder("| checkpoint | tables | clients | tokens each | rounds | completed | errors | 429 (expected) | aggregate tokens/s, median round | TTFT p50 (ms) | TTFT p99 (ms) | per-token p50 (ms) | per-token p99 (ms) | server peak RSS (MiB) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        foreach (var r in results)
            text.Append(CultureInfo.InvariantCulture,
                $"| {r.Checkpoint} | {(r.MapTables ? "mapped" : "loaded")} | {r.Clients} | {r.Tokens} | {r.Rounds} | {r.Completed} | {r.Errors} | {r.Rejected} ({r.ExpectedRejected}) | {r.TokensPerSecond:F0} | {r.FirstTokenP50 * 1000:F0} | {r.FirstTokenP99 * 1000:F0} | {r.TokenP50 * 1000:F1} | {r.TokenP99 * 1000:F1} | {r.PeakResidentBytes / (1024.0 * 1024):F0} |\n");
        text.Append('\n');
        foreach (var served in results.GroupBy(r => (r.Checkpoint, r.MapTables)))
        {
            if (served.FirstOrDefault(r => r.Clients == 1) is not { TokensPerSecond: > 0 } alone) continue;
            text.Append(CultureInfo.InvariantCulture, $"- {served.Key.Checkpoint} {(served.Key.MapTables ? "mapped" : "loaded")}: aggregate tokens/s over one client's: ");
            text.AppendJoin(", ", served.Where(r => r.Clients > 1).Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Clients} clients {r.TokensPerSecond / alone.TokensPerSecond:F1}x")));
            text.Append('\n');
        }
        return text.ToString();
    }
}
