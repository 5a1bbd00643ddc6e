using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using PeerSharp.Benchmarks;

namespace PeerSharp.Cli.Commands;

/// <summary>
/// `peer bench`: times one PEER layer against dense feed-forwards for several N, and a language model with PEER
/// in the middle block against the same model dense; prints the tables and writes docs/PERFORMANCE.md.
/// Each configuration runs in a child process (this program again, with the hidden --run-case option) so that
/// its peak resident memory is its own; the child prints its result as one JSON line.
/// </summary>
public static class BenchCommand
{
    const string ResultMarker = "PEER-BENCH-RESULT ";

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>One child run: a layer or a model.</summary>
    sealed record Job(LayerCase? Layer, ModelCase? Model);

    /// <summary>A child's answer.</summary>
    sealed record Outcome(LayerResult? Layer, ModelResult? Model);

    /// <summary>The command.</summary>
    public static Command Create()
    {
        var sizes = new Option<string>("--sizes") { Description = "Comma list of n, the sub-keys per half (N = n² experts)", DefaultValueFactory = _ => "128,256,512,1024" };
        var quick = new Option<bool>("--quick") { Description = "A fast smaller run: N ∈ {64², 128²}, 1024 tokens per step, fewer steps, a 4-block model" };
        var tokens = new Option<int?>("--tokens") { Description = "Tokens per step of the layer benchmark (default 4096; 1024 with --quick)" };
        var steps = new Option<int?>("--steps") { Description = "Timed steps per configuration (default 5; 3 with --quick)" };
        var warmup = new Option<int?>("--warmup") { Description = "Untimed steps first (default 2; 1 with --quick)" };
        var threads = new Option<int>("--threads") { Description = "Threads of libtorch and the C# kernels", DefaultValueFactory = _ => Environment.ProcessorCount };
        var noModel = new Option<bool>("--no-model") { Description = "Skip the full language-model comparison" };
        var output = new Option<string>("--output") { Description = "Where to write the report (\"-\": nowhere)", DefaultValueFactory = _ => Path.Combine("docs", "PERFORMANCE.md") };
        var runCase = new Option<string?>("--run-case") { Description = "Internal: run one configuration given as JSON and print its result", Hidden = true };
        var command = new Command("bench", "Time PEER (fused and tensor ops) against dense feed-forwards and write docs/PERFORMANCE.md")
        {
            sizes, quick, tokens, steps, warmup, threads, noModel, output, runCase,
        };
        command.SetAction(parse =>
        {
            if (parse.GetValue(runCase) is { } job) return RunCase(job);
            bool isQuick = parse.GetValue(quick);
            var plan = Plan(
                subKeyCounts: isQuick && parse.GetResult(sizes) is null or { Implicit: true } ? [64, 128] : ParseSizes(parse.GetValue(sizes)!),
                tokensPerStep: parse.GetValue(tokens) ?? (isQuick ? 1024 : 4096),
                timedSteps: parse.GetValue(steps) ?? (isQuick ? 3 : 5),
                warmupSteps: parse.GetValue(warmup) ?? (isQuick ? 1 : 2),
                threadCount: parse.GetValue(threads),
                withModel: !parse.GetValue(noModel),
                quickModel: isQuick);
            return RunAll(plan, parse.GetValue(output)!);
        });
        return command;
    }

    static int[] ParseSizes(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var sizes = new List<int>();
        foreach (var part in parts)
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 16)
                throw new PeerSharpException($"bench size '{part}' is not a sub-key count n ≥ 16; expected a comma list such as 128,256,512,1024 (N = n²)");
            sizes.Add(n);
        }
        if (sizes.Count == 0) throw new PeerSharpException("bench sizes are empty; expected a comma list such as 128,256,512,1024");
        return [.. sizes.Distinct().Order()];
    }

    static List<Job> Plan(int[] subKeyCounts, int tokensPerStep, int timedSteps, int warmupSteps, int threadCount, bool withModel, bool quickModel)
    {
        if (tokensPerStep <= 0 || timedSteps <= 0 || warmupSteps < 0 || threadCount <= 0)
            throw new PeerSharpException($"bench needs positive tokens ({tokensPerStep}), steps ({timedSteps}) and threads ({threadCount}) and no negative warm-up ({warmupSteps})");
        var basis = new LayerCase { Tokens = tokensPerStep, Steps = timedSteps, WarmupSteps = warmupSteps, Threads = threadCount, SubKeyCount = subKeyCounts[0] };
        var jobs = new List<Job> { new(basis with { Kind = LayerKind.DenseFfw }, null) };
        foreach (var n in subKeyCounts)
        {
            jobs.Add(new(basis with { Kind = LayerKind.DenseEqualFlops, SubKeyCount = n }, null));
            // Tensor ops with dense AdamW need ~12 GB and seconds per step at N = 1024²: fewer steps from 512² up.
            var plain = basis with { Kind = LayerKind.PeerPlain, SubKeyCount = n };
            jobs.Add(new(n >= 512 ? plain with { Steps = Math.Min(timedSteps, 2), WarmupSteps = Math.Min(warmupSteps, 1) } : plain, null));
            jobs.Add(new(basis with { Kind = LayerKind.PeerFused, SubKeyCount = n }, null));
        }
        if (withModel)
        {
            var model = quickModel
                ? new ModelCase { SubKeyCount = subKeyCounts[^1], ModelDim = 128, LayerCount = 4, AttentionHeads = 4, KeyDim = 64, ContextLength = 64, BatchSize = 8, Steps = 2, Threads = threadCount }
                : new ModelCase { SubKeyCount = subKeyCounts[^1], Threads = threadCount };
            for (int round = 0; round < 2; round++)
            {
                jobs.Add(new(null, model with { Peer = false }));
                jobs.Add(new(null, model));
            }
        }
        return jobs;
    }

    static int RunAll(List<Job> jobs, string output)
    {
        var layers = new List<LayerResult>();
        var models = new List<ModelResult>();
        var machine = MachineInfo.Current();
        var clock = Stopwatch.StartNew();
        foreach (var job in jobs)
        {
            var label = job.Layer is { } l
                ? $"{BenchmarkReport.Name(l.Kind)}{(l.Kind == LayerKind.DenseFfw ? "" : $", N = {l.SubKeyCount}²")}"
                : $"model: {(job.Model!.Peer ? $"PEER N = {job.Model.SubKeyCount}² in the middle block" : "dense")}";
            Console.Write($"[{clock.Elapsed:mm\\:ss}] {label} ... ");
            var outcome = RunChild(job);
            if (outcome?.Layer is { } layer)
            {
                layers.Add(layer);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{layer.StepMs:F1} ms per 1k tokens (fwd {layer.ForwardMs:F1}, bwd {layer.BackwardMs:F1}, update {layer.OptimizerMs:F1}), peak {layer.PeakResidentBytes / 1e9:F2} GB"));
            }
            else if (outcome?.Model is { } model)
            {
                models.Add(model);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{model.TokensPerSecond:F0} tokens/s, peak {model.PeakResidentBytes / 1e9:F2} GB"));
            }
            else Console.WriteLine("failed (see above); left out of the report");
        }
        var command = "peer " + string.Join(" ", Environment.GetCommandLineArgs().Skip(1));
        var report = new BenchmarkReport(machine, command, layers, models);
        Console.WriteLine();
        Console.WriteLine(report.LayerTable());
        if (models.Count > 0) Console.WriteLine(report.ModelTable());
        Console.WriteLine(report.TargetTable());
        if (output != "-")
        {
            var folder = Path.GetDirectoryName(Path.GetFullPath(output));
            if (folder is not null) Directory.CreateDirectory(folder);
            File.WriteAllText(output, report.Markdown());
            Console.WriteLine($"wrote {output}");
        }
        return 0;
    }

    /// <summary>Runs one job in a fresh process of this program and reads back its result line.</summary>
    static Outcome? RunChild(Job job)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        // Under `dotnet peer.dll` the process is the dotnet host: name the program again.
        var entry = Assembly.GetEntryAssembly()!.Location;
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(entry);
        foreach (var argument in new[] { "bench", "--run-case", JsonSerializer.Serialize(job, Json) }) start.ArgumentList.Add(argument);
        using var child = Process.Start(start)!;
        string? result = null;
        while (child.StandardOutput.ReadLine() is { } line)
        {
            if (line.StartsWith(ResultMarker, StringComparison.Ordinal)) result = line[ResultMarker.Length..];
            else Console.WriteLine(line);
        }
        child.WaitForExit();
        if (child.ExitCode != 0 || result is null)
        {
            Console.Error.WriteLine($"benchmark process exited with code {child.ExitCode}{(child.ExitCode == 137 ? " (killed: out of memory?)" : "")}");
            return null;
        }
        return JsonSerializer.Deserialize<Outcome>(result, Json);
    }

    /// <summary>The child's side: run the job, print one result line.</summary>
    static int RunCase(string json)
    {
        var job = JsonSerializer.Deserialize<Job>(json, Json) ?? throw new PeerSharpException("bench --run-case got an empty job");
        var outcome = job.Layer is { } layer ? new Outcome(LayerBenchmark.Run(layer), null)
                    : job.Model is { } model ? new Outcome(null, ModelBenchmark.Run(model))
                    : throw new PeerSharpException("bench --run-case got a job with neither a layer nor a model");
        Console.WriteLine(ResultMarker + JsonSerializer.Serialize(outcome, Json));
        return 0;
    }
}
