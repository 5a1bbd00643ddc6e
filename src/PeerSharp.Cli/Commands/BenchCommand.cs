using System.CommandLine;
using PeerSharp.Benchmarks;

namespace PeerSharp.Cli.Commands;

/// <summary>`peer bench`: the options of <see cref="BenchRunner"/> (bench/PeerSharp.Bench), which does the work.</summary>
static class BenchCommand
{
    public static Command Create()
    {
        var sizes = new Option<string>("--sizes") { Description = "Comma list of n, the sub-keys per half (N = n² experts)", DefaultValueFactory = _ => "128,256,512,1024" };
        var large = new Option<string>("--large-sizes") { Description = "Comma list of n beyond --sizes where only the fused layer with the row-wise-no-momentum table state runs, float32 and bfloat16 tables (what fits in memory; \"\" for none)", DefaultValueFactory = _ => "2048" };
        var quick = new Option<bool>("--quick") { Description = "A fast smaller run: N ∈ {64², 128²}, 1024 tokens per step, fewer steps, a 4-block model" };
        var tokens = new Option<int?>("--tokens") { Description = "Tokens per step of the layer and kernel benchmarks (default 4096; 1024 with --quick)" };
        var steps = new Option<int?>("--steps") { Description = "Timed steps per configuration (default 5; 3 with --quick)" };
        var warmup = new Option<int?>("--warmup") { Description = "Untimed steps first (default 2; 1 with --quick)" };
        var threads = new Option<int>("--threads") { Description = "Threads of libtorch and the C# kernels", DefaultValueFactory = _ => Environment.ProcessorCount };
        var noModel = new Option<bool>("--no-model") { Description = "Skip the full language-model comparison" };
        var output = new Option<string>("--output") { Description = "Where to write the report (\"-\": nowhere)", DefaultValueFactory = _ => Path.Combine("docs", "PERFORMANCE.md") };
        var distributed = new Option<bool>("--distributed") { Description = "Only print the bytes per step and rank of the expert tables' exchange (dense all-reduce, row exchange, expert parallel) for the --sizes and --tokens" };
        var generation = new Option<string?>("--generation") { Description = "Comma list of checkpoints (smallest N first, e.g. written by peer init) to time text generation from, tables memory-mapped (the first also loaded)" };
        var generationOnly = new Option<bool>("--generation-only") { Description = "Only the generation benchmark of --generation" };
        var serve = new Option<string?>("--serve") { Description = "Comma list of checkpoints to load-test `peer serve` with (1, 4, 16, 64 concurrent streaming clients × 128 tokens, --serve-rounds times each); a checkpoint ending in :mapped is served with --map-tables. Writes the table to --output if given" };
        var serveRounds = new Option<int>("--serve-rounds") { Description = "With --serve: rounds of each load level (tokens/s is the median round's)", DefaultValueFactory = _ => 3 };
        var serveQueue = new Option<int>("--serve-queue") { Description = "With --serve: the server's --max-queue; at 64 clients and --max-batch 16 the default 32 leaves 16 clients a 429 each round", DefaultValueFactory = _ => 32 };
        var runCase = new Option<string?>(BenchRunner.RunCaseOption) { Description = "Internal: run one configuration given as JSON and print its result", Hidden = true };
        var command = new Command("bench", "Time PEER (fused and tensor ops) against dense feed-forwards, each kernel against its reference, and write docs/PERFORMANCE.md")
        {
            sizes, large, quick, tokens, steps, warmup, threads, noModel, output, distributed, generation, generationOnly, serve, serveRounds, serveQueue, runCase,
        };
        command.SetAction(parse =>
        {
            if (parse.GetValue(runCase) is { } job) return BenchRunner.RunCase(job);
            if (parse.GetValue(serve) is { } served)
            {
                var results = served.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .SelectMany(c => ServeBenchmark.Run(c.EndsWith(":mapped") ? c[..^7] : c, c.EndsWith(":mapped"), [1, 4, 16, 64], parse.GetValue(tokens) ?? 128,
                                                      maxBatch: 16, maxQueue: parse.GetValue(serveQueue), rounds: parse.GetValue(serveRounds)))
                    .ToList();
                var table = ServeBenchmark.Table(results);
                Console.Write(table);
                if (parse.GetResult(output) is { Implicit: false }) File.WriteAllText(parse.GetValue(output)!, $"<!-- written by: peer {string.Join(" ", Environment.GetCommandLineArgs().Skip(1))} -->\n" + table);
                return 0;
            }
            if (parse.GetValue(distributed))
            {
                int[] tokenCounts = parse.GetValue(tokens) is { } t ? [t] : [1024, 4096, 16384];
                var volumes = ExchangeVolumeBenchmark.Measure(BenchRunner.ParseSizes(parse.GetValue(sizes)!), tokenCounts, [2, 8, 64]);
                Console.Write(ExchangeVolumeBenchmark.Markdown(volumes));
                return 0;
            }
            bool isQuick = parse.GetValue(quick);
            var plan = new BenchPlan(
                SubKeyCounts: isQuick && parse.GetResult(sizes) is null or { Implicit: true } ? [64, 128] : BenchRunner.ParseSizes(parse.GetValue(sizes)!),
                TokensPerStep: parse.GetValue(tokens) ?? (isQuick ? 1024 : 4096),
                TimedSteps: parse.GetValue(steps) ?? (isQuick ? 3 : 5),
                WarmupSteps: parse.GetValue(warmup) ?? (isQuick ? 1 : 2),
                Threads: parse.GetValue(threads),
                WithModel: !parse.GetValue(noModel),
                QuickModel: isQuick,
                Generation: parse.GetValue(generation)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
                GenerationOnly: parse.GetValue(generationOnly),
                LargeSizes: isQuick || string.IsNullOrWhiteSpace(parse.GetValue(large)) ? [] : BenchRunner.ParseSizes(parse.GetValue(large)!));
            // Generation alone is not the whole report: print it, and write docs/PERFORMANCE.md only when asked to.
            var report = plan.GenerationOnly && parse.GetResult(output) is null or { Implicit: true } ? "-" : parse.GetValue(output)!;
            return BenchRunner.RunAll(plan, report, "peer " + string.Join(" ", Environment.GetCommandLineArgs().Skip(1)));
        });
        return command;
    }
}
