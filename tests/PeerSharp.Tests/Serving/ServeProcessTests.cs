using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using PeerSharp.Tests.Cli;

namespace PeerSharp.Tests.Serving;

/// `peer serve` as the real program: SIGTERM lets the request in flight finish, then the process exits 0.
public class ServeProcessTests : IDisposable
{
    readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [SignalNotIgnoredFact(PeerProcess.SigTerm)]
    public async Task SigtermDrainsTheRunningRequestAndExitsZero()
    {
        var run = _folder.File("run");
        var trained = PeerProcess.Run(_folder.Path, "train", "--preset", "tiny", "--steps", "2", "--out", run, "--sample-tokens", "0");
        Assert.True(trained.ExitCode == 0, trained.Output + trained.Error);
        int port = FreePort();
        using var server = PeerProcess.Start(_folder.Path, "serve", "--checkpoint", Path.Combine(run, "checkpoint.json"), "--port", port.ToString(), "--drain-seconds", "60");
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(2) };
        await Until(async () => (await client.GetAsync("/health")).StatusCode == HttpStatusCode.OK, server);

        var inFlight = client.PostAsync("/v1/completions", new StringContent("""{"prompt":"The ","max_tokens":2000,"seed":1}""", Encoding.UTF8, "application/json"));
        await Until(async () => (await client.GetStringAsync("/metrics")).Contains("peer_running_requests 1"), server);
        server.Signal(PeerProcess.SigTerm);

        using var response = await inFlight;
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("length", (string)body["choices"]![0]!["finish_reason"]!);
        Assert.Equal(2000, (int)body["usage"]!["completion_tokens"]!);
        var exited = server.WaitForExit();
        Assert.True(exited.ExitCode == 0, $"exit code {exited.ExitCode}:\n{exited.Output}\n{exited.Error}");
    }

    static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// Polls <paramref name="condition"/> (connection errors count as false) for up to a minute, failing early if the server died.
    static async Task Until(Func<Task<bool>> condition, PeerProcess.Running server)
    {
        for (var started = DateTime.UtcNow; DateTime.UtcNow - started < TimeSpan.FromMinutes(1); await Task.Delay(20))
        {
            if (server.HasExited) Assert.Fail($"peer serve ended early:\n{server.WaitForExit().Output}\n{server.WaitForExit().Error}");
            try
            {
                if (await condition()) return;
            }
            catch (HttpRequestException)
            {
            }
        }
        Assert.Fail("peer serve did not get there in a minute");
    }
}
