using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using PeerSharp.Checkpoints;
using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Model;

namespace PeerSharp.Benchmarks;

/// <summary>What `peer bench` measures.</summary>
/// <param name="SubKeyCounts">n of the PEER layers (N = n²), ascending.</param>
/// <param name="TokensPerStep">Tokens per step of the layer and kernel benchmarks.</param>
/// <param name="TimedSteps">Timed steps per configuration.</param>
/// <param name="WarmupSteps">Untimed steps first.</param>
/// <param name="Threads">Threads of libtorch and the C# kernels.</param>
/// <param name="WithModel">Also the full language model with and without PEER.</param>
/// <param name="QuickModel">A 4-block model instead of the paper's 12 blocks.</param>
/// <param name="Generation">Checkpoints to generate text from with mapped tables (the first also loaded), smallest N first.</param>
/// <param name="GenerationOnly">Only the generation benchmark.</param>
/// <param name="LargeSizes">n beyond <paramref name="SubKeyCounts"/> where only the leanest fused layer runs, to show what fits in memory.</param>
public sealed record BenchPlan(int[] SubKeyCounts, int TokensPerStep, int TimedSteps, int WarmupSteps, int Threads, bool WithModel, bool QuickModel,
                               IReadOnlyList<string>? Generation = null, bool GenerationOnly = false, int[]? LargeSizes = null);

/// <summary>
/// `peer bench`: times one PEER layer against dense feed-forwards for several N, each fast kernel against its
/// plain reference, and a language model with PEER in the middle block against the same model dense; prints
/// the tables and writes docs/PERFORMANCE.md. Each configuration runs in a child process (the running program
/// again, with <see cref="RunCaseOption"/>) so that its peak resident memory is its own; the child prints its
/// result as one JSON line.
/// </summary>
public static class BenchRunner
{
    /// <summary>The hidden option of `peer bench` that runs one configuration given as JSON.</summary>
    public const string RunCaseOption = "--run-case";

    const string ResultMarker = "PEER-BENCH-RESULT ";

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>One child run: a layer, a kernel, a model or a generation.</summary>
    sealed record Job(LayerCase? Layer, KernelCase? Kernel, ModelCase? Model, GenerationCase? Generation = null);

    /// <summary>A child's answer.</summary>
    sealed record Outcome(LayerResult? Layer, KernelResult? Kernel, ModelResult? Model, GenerationResult? Generation = null);

    /// <summary>Sub-key counts from a comma list such as "128,256,512,1024".</summary>
    public static int[] ParseSizes(string text)
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

    static List<Job> Jobs(BenchPlan plan)
    {
        if (plan.TokensPerStep <= 0 || plan.TimedSteps <= 0 || plan.WarmupSteps < 0 || plan.Threads <= 0)
            throw new PeerSharpException($"bench needs positive tokens ({plan.TokensPerStep}), steps ({plan.TimedSteps}) and threads ({plan.Threads}) and no negative warm-up ({plan.WarmupSteps})");
        var generation = GenerationJobs(plan);
        if (plan.GenerationOnly) return generation;
        var peer = new PeerOptions { SubKeyCount = plan.SubKeyCounts[0], HeadCount = 8, TopK = 16, KeyDim = 128 };
        var basis = new LayerCase { Tokens = plan.TokensPerStep, Steps = plan.TimedSteps, WarmupSteps = plan.WarmupSteps, Threads = plan.Threads, PeerOptions = peer };
        var jobs = new List<Job> { new(basis with { Kind = LayerKind.DenseFfw }, null, null) };
        foreach (var n in plan.SubKeyCounts)
        {
            var sized = basis with { PeerOptions = peer with { SubKeyCount = n } };
            jobs.Add(new(sized with { Kind = LayerKind.DenseEqualFlops }, null, null));
            // Tensor ops with dense AdamW need ~12 GB and seconds per step at N = 1024²: fewer steps from 512² up.
            var plain = sized with { Kind = LayerKind.PeerPlain, PeerOptions = sized.PeerOptions with { Kernel = KernelChoice.Plain } };
            jobs.Add(new(n >= 512 ? plain with { Steps = Math.Min(plan.TimedSteps, 2), WarmupSteps = Math.Min(plan.WarmupSteps, 1) } : plain, null, null));
            jobs.Add(new(sized with { Kind = LayerKind.PeerFused }, null, null));
            // The leanest training at the smallest N too, so that its cost from the smallest to the largest N is like for like.
            if (n == plan.SubKeyCounts[0] && plan.SubKeyCounts.Length > 1) jobs.Add(new(Leanest(sized), null, null));
            // The row-wise table states and the update in the backward at the largest N, where their memory matters.
            if (n == plan.SubKeyCounts[^1])
            {
                foreach (var lean in new[] { TableOptimizerState.RowWise, TableOptimizerState.RowWiseNoMomentum })
                    jobs.Add(new(sized with { Kind = LayerKind.PeerFused, TableState = lean }, null, null));
                foreach (var state in new[] { TableOptimizerState.Full, TableOptimizerState.RowWiseNoMomentum })
                    jobs.Add(new(sized with { Kind = LayerKind.PeerFused, TableState = state, UpdateInBackward = true }, null, null));
                jobs.Add(new(Leanest(sized), null, null));
            }
        }
        // The largest tables: only the fused layer with the leanest state, a few steps (memory is the question there).
        foreach (var n in plan.LargeSizes ?? [])
        {
            var large = basis with
            {
                Kind = LayerKind.PeerFused, TableState = TableOptimizerState.RowWiseNoMomentum, PeerOptions = peer with { SubKeyCount = n },
                Steps = Math.Min(plan.TimedSteps, 3), WarmupSteps = Math.Min(plan.WarmupSteps, 1),
            };
            jobs.Add(new(large, null, null));
            jobs.Add(new(Leanest(large), null, null));
        }
        // Each fast kernel against its reference, at the smallest and the largest N.
        foreach (var n in new[] { plan.SubKeyCounts[0], plan.SubKeyCounts[^1] }.Distinct())
            foreach (var kernel in Enum.GetValues<KernelKind>().Where(k => k is not (KernelKind.LeanTableUpdate or KernelKind.BFloat16Experts) || n == plan.SubKeyCounts[^1]))
                foreach (var variant in new[] { KernelChoice.Plain, KernelChoice.Fused })
                    jobs.Add(new(null, new KernelCase
                    {
                        Kernel = kernel, Variant = variant, PeerOptions = peer with { SubKeyCount = n }, Tokens = plan.TokensPerStep,
                        Steps = plan.TimedSteps, WarmupSteps = plan.WarmupSteps, Threads = plan.Threads,
                    }, null));
        if (plan.WithModel)
        {
            var model = plan.QuickModel
                ? new ModelCase
                {
                    Model = new ModelConfig { ModelDim = 128, LayerCount = 4, AttentionHeads = 4, ContextLength = 64, PeerOptions = peer with { SubKeyCount = plan.SubKeyCounts[^1], KeyDim = 64 } },
                    BatchSize = 8, Steps = 2, Threads = plan.Threads,
                }
                : new ModelCase { Threads = plan.Threads, Model = new ModelCase().Model with { PeerOptions = peer with { SubKeyCount = plan.SubKeyCounts[^1] } } };
            for (int round = 0; round < 2; round++)
            {
                jobs.Add(new(null, null, model with { Model = model.Model with { FeedForward = FeedForwardKind.Dense } }));
                jobs.Add(new(null, null, model));
            }
        }
        return [.. jobs, .. generation];
    }

    /// <summary>Generation from each checkpoint with mapped tables, and from the first (the smallest N) loaded as well, to compare against.</summary>
    static List<Job> GenerationJobs(BenchPlan plan)
    {
        var checkpoints = plan.Generation ?? [];
        if (plan.GenerationOnly && checkpoints.Count == 0)
            throw new PeerSharpException("bench --generation-only needs --generation CHECKPOINTS, a comma list of checkpoints (smallest N first)");
        // Each is read in a process of its own, much later: a checkpoint that is not there is told before any benchmark starts.
        foreach (var checkpoint in checkpoints)
            if (!File.Exists(Checkpoint.SidecarPath(checkpoint)))
                throw new PeerSharpException($"checkpoint '{Checkpoint.SidecarPath(checkpoint)}' of --generation does not exist; expected the .json sidecar of a PeerSharp checkpoint");
        var jobs = new List<Job>();
        for (int i = 0; i < checkpoints.Count; i++)
        {
            var mapped = new GenerationCase { Checkpoint = checkpoints[i], Threads = plan.Threads };
            if (i == 0) jobs.Add(new(null, null, null, mapped with { MapTables = false }));
            jobs.Add(new(null, null, null, mapped));
        }
        return jobs;
    }

    /// <summary>Runs every configuration of the plan, prints the tables and writes the report (unless <paramref name="output"/> is "-").</summary>
    public static int RunAll(BenchPlan plan, string output, string commandLine)
    {
        var jobs = Jobs(plan);
        var layers = new List<LayerResult>();
        var kernels = new List<KernelResult>();
        var models = new List<ModelResult>();
        var generations = new List<GenerationResult>();
        var machine = MachineInfo.Current();
        var clock = Stopwatch.StartNew();
        var failed = 0;
        foreach (var job in jobs)
        {
            var label = job.Layer is { } l
                ? $"{BenchmarkReport.Name(l)}{(l.Kind == LayerKind.DenseFfw ? "" : $", N = {l.PeerOptions.SubKeyCount}²")}"
                : job.Kernel is { } k ? $"kernel {EnumNames.Name(k.Kernel)} ({EnumNames.Name(k.Variant)}), N = {k.PeerOptions.SubKeyCount}²"
                : job.Model is { } m ? $"model: {BenchmarkReport.Name(m.Model)}"
                : $"generate from {job.Generation!.Checkpoint}, tables {(job.Generation.MapTables ? "mapped" : "loaded")}";
            Console.Write($"[{clock.Elapsed:mm\\:ss}] {label} ... ");
            var outcome = RunChild(job);
            if (outcome?.Layer is { } layer)
            {
                layers.Add(layer);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{layer.StepMs:F1} ms per 1k tokens (fwd {layer.ForwardMs:F1}, bwd {layer.BackwardMs:F1}, update {layer.OptimizerMs:F1}), peak {layer.PeakResidentBytes / 1e9:F2} GB"));
            }
            else if (outcome?.Kernel is { } kernel)
            {
                kernels.Add(kernel);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{kernel.ForwardMs:F2} + {kernel.BackwardMs:F2} ms per 1k tokens"));
            }
            else if (outcome?.Model is { } model)
            {
                models.Add(model);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{model.TokensPerSecond:F0} tokens/s, peak {model.PeakResidentBytes / 1e9:F2} GB"));
            }
            else if (outcome?.Generation is { } generated)
            {
                generations.Add(generated);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{generated.TokensPerSecond:F0} tokens/s, peak {generated.PeakResidentBytes / 1e9:F2} GB"));
            }
            else
            {
                Console.WriteLine("failed (see above); left out of the report");
                failed++;
            }
        }
        var report = new BenchmarkReport(machine, commandLine, layers, kernels, models, generations);
        Console.WriteLine();
        if (layers.Count > 0) Console.WriteLine(report.LayerTable());
        if (kernels.Count > 0) Console.WriteLine(report.KernelTable());
        if (models.Count > 0) Console.WriteLine(report.ModelTable());
        if (generations.Count > 0) Console.WriteLine(report.GenerationTable());
        Console.WriteLine(report.TargetTable());
        if (output != "-")
        {
            var folder = Path.GetDirectoryName(Path.GetFullPath(output));
            if (folder is not null) Directory.CreateDirectory(folder);
            File.WriteAllText(output, report.Markdown());
            Console.WriteLine($"wrote {output}");
        }
        if (failed == 0) return 0;
        Console.Error.WriteLine($"peer: {failed} of {jobs.Count} benchmarks failed (their errors are above); the report leaves them out");
        return 1;
    }

    /// <summary>Runs one job in a fresh process of this program and reads back its result line.</summary>
    static Outcome? RunChild(Job job)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        // Under `dotnet peer.dll` the process is the dotnet host: name the program again.
        var entry = Assembly.GetEntryAssembly()!.Location;
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(entry);
        foreach (var argument in new[] { "bench", RunCaseOption, JsonSerializer.Serialize(job, Json) }) start.ArgumentList.Add(argument);
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
    public static int RunCase(string json)
    {
        var job = JsonSerializer.Deserialize<Job>(json, Json) ?? throw new PeerSharpException("bench --run-case got an empty job");
        var outcome = job.Layer is { } layer ? new Outcome(LayerBenchmark.Run(layer), null, null)
                    : job.Kernel is { } kernel ? new Outcome(null, KernelBenchmark.Run(kernel), null)
                    : job.Model is { } model ? new Outcome(null, null, ModelBenchmark.Run(model))
                    : job.Generation is { } generation ? new Outcome(null, null, null, GenerationBenchmark.Run(generation))
                    : throw new PeerSharpException("bench --run-case got a job with neither a layer, a kernel, a model nor a generation");
        Console.WriteLine(ResultMarker + JsonSerializer.Serialize(outcome, Json));
        return 0;
    }

    /// <summary>The leanest training of a fused PEER layer: bfloat16 tables, no first moment, updated in the backward.</summary>
    static LayerCase Leanest(LayerCase sized) => sized with
    {
        Kind = LayerKind.PeerFused, TableState = TableOptimizerState.RowWiseNoMomentum, UpdateInBackward = true,
        PeerOptions = sized.PeerOptions with { TableStorage = ExpertTableStorage.BFloat16 },
    };
}
