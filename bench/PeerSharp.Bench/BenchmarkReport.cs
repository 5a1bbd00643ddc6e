using System.Globalization;
using System.Text;
using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Model;

namespace PeerSharp.Benchmarks;

/// <summary>The tables of `peer bench` and the docs/PERFORMANCE.md it writes, with the issue's targets checked.</summary>
public sealed class BenchmarkReport(MachineInfo machine, string command, IReadOnlyList<LayerResult> layers, IReadOnlyList<KernelResult> kernels, IReadOnlyList<ModelResult> models,
                                     IReadOnlyList<GenerationResult>? generations = null)
{
    readonly IReadOnlyList<GenerationResult> _generations = generations ?? [];

    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>The layer table (markdown).</summary>
    public string LayerTable()
    {
        var s = new StringBuilder();
        s.AppendLine("| layer | N | hidden | parameters | fwd MFLOP/token | forward | backward | update | **total** | CPU time | peak RSS | activations | step memory |");
        s.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in layers)
        {
            var n = r.Case.Kind == LayerKind.DenseFfw ? "–" : $"{r.Case.PeerOptions.SubKeyCount}²";
            s.AppendLine(Invariant, $"| {Name(r.Case)} | {n} | {(r.HiddenDim > 0 ? r.HiddenDim.ToString(Invariant) : "–")} | {Millions(r.Parameters)} | " +
                         $"{r.ForwardFlopsPerToken / 1e6:F2} | {r.ForwardMs:F1} | {r.BackwardMs:F1} | {r.OptimizerMs:F1} | **{r.StepMs:F1}** | {r.StepCpuMs:F0} | " +
                         $"{Gib(r.PeakResidentBytes)} | {Mib(r.ActivationBytes)} | {Mib(r.StepBytes)} |");
        }
        return s.ToString();
    }

    /// <summary>The kernel table (markdown): each fast kernel beside its plain reference, and the speed-up.</summary>
    public string KernelTable()
    {
        var s = new StringBuilder();
        s.AppendLine("| kernel | N | plain forward | plain backward | fast forward | fast backward | speed-up |");
        s.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var group in kernels.GroupBy(k => (k.Case.Kernel, k.Case.PeerOptions.SubKeyCount)))
        {
            var plain = group.FirstOrDefault(k => k.Case.Variant == KernelChoice.Plain);
            var fast = group.FirstOrDefault(k => k.Case.Variant == KernelChoice.Fused);
            if (plain is null || fast is null) continue;
            double speedUp = (plain.ForwardMs + plain.BackwardMs) / (fast.ForwardMs + fast.BackwardMs);
            s.AppendLine(Invariant, $"| {Name(group.Key.Kernel)} | {group.Key.SubKeyCount}² | {plain.ForwardMs:F2} | {plain.BackwardMs:F2} | {fast.ForwardMs:F2} | {fast.BackwardMs:F2} | **{speedUp:F1}×** |");
        }
        return s.ToString();
    }

    /// <summary>The model table (markdown).</summary>
    public string ModelTable()
    {
        var s = new StringBuilder();
        s.AppendLine("| model | parameters | step (ms) | tokens/s | peak RSS |");
        s.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var m in models)
        {
            var name = Name(m.Case.Model);
            s.AppendLine(Invariant, $"| {name} | {Millions(m.Parameters)} | {m.StepMs:F0} | {m.TokensPerSecond:F0} | {Gib(m.PeakResidentBytes)} |");
        }
        return s.ToString();
    }

    /// <summary>The generation table (markdown).</summary>
    public string GenerationTable()
    {
        var s = new StringBuilder();
        s.AppendLine("| N | model file | tables | load (s) | tokens/s | peak RSS | own memory at the end | file pages at the end |");
        s.AppendLine("|---|---:|---|---:|---:|---:|---:|---:|");
        foreach (var g in _generations)
            s.AppendLine(Invariant, $"| {string.Join(", ", g.ExpertCounts.Select(Square))} | {g.FileBytes / 1e9:F2} GB | {(g.Case.MapTables ? "mapped" : "loaded")}{(g.TableStorage == ExpertTableStorage.BFloat16 ? ", bfloat16" : "")} | {g.LoadSeconds:F1} | {g.TokensPerSecond:F0} | " +
                                    $"{Gib(g.PeakResidentBytes)} | {Mib(g.AnonymousBytes)} | {Mib(g.FileBackedBytes)} |");
        return s.ToString();
    }

    /// <summary>"1024²" for N = 1024², N itself when it is no square.</summary>
    static string Square(long n)
    {
        var root = (long)Math.Round(Math.Sqrt(n));
        return root * root == n ? $"{root}²" : n.ToString("N0", Invariant);
    }

    /// <summary>The issue's targets that the measured configurations allow to check (markdown).</summary>
    public string TargetTable()
    {
        var s = new StringBuilder();
        s.AppendLine("| target | measured | met |");
        s.AppendLine("|---|---|---|");
        void Row(string target, string measured, bool met) => s.AppendLine($"| {target} | {measured} | {(met ? "yes" : "**no**")} |");

        // The sizes every layer ran at: the full-state fused rows (the --large-sizes rows have only the lean state).
        int largest = layers.Where(r => r.Case.Kind == LayerKind.PeerFused && r.Case.TableState == TableOptimizerState.Full).Select(r => r.Case.PeerOptions.SubKeyCount).DefaultIfEmpty(0).Max();
        int smallest = layers.Where(r => r.Case.Kind == LayerKind.PeerFused).Select(r => r.Case.PeerOptions.SubKeyCount).DefaultIfEmpty(0).Min();
        var fused = Find(LayerKind.PeerFused, largest);
        var lean = layers.FirstOrDefault(r => r.Case.Kind == LayerKind.PeerFused && r.Case.PeerOptions.SubKeyCount == largest && r.Case.TableState == TableOptimizerState.RowWiseNoMomentum && !r.Case.UpdateInBackward);
        var leanInBackward = layers.FirstOrDefault(r => r.Case.Kind == LayerKind.PeerFused && r.Case.PeerOptions.SubKeyCount == largest && r.Case.TableState == TableOptimizerState.RowWiseNoMomentum && r.Case.UpdateInBackward && r.Case.PeerOptions.TableStorage == ExpertTableStorage.Float32);
        var leanest = layers.FirstOrDefault(r => r.Case.Kind == LayerKind.PeerFused && r.Case.PeerOptions.SubKeyCount == largest && r.Case.PeerOptions.TableStorage == ExpertTableStorage.BFloat16);
        var plain = Find(LayerKind.PeerPlain, largest);
        var equal = Find(LayerKind.DenseEqualFlops, largest);
        var small = Find(LayerKind.PeerFused, smallest);
        var at = $"N = {largest}²";
        if (fused is not null)
        {
            Row($"{at}: fused + sparse ≤ 350 ms per 1k tokens (forward + backward + update)", $"{fused.StepMs:F0} ms", fused.StepMs <= 350);
            Row($"{at}: ≤ 4 GB resident (layer benchmark)", $"{fused.PeakResidentBytes / 1e9:F2} GB", fused.PeakResidentBytes <= 4e9);
        }
        if (lean is not null)
        {
            Row($"{at}, row-wise table state without momentum: ≤ 80 ms per 1k tokens (issue 9)", $"{lean.StepMs:F0} ms", lean.StepMs <= 80);
            Row($"{at}, row-wise table state without momentum: ≤ 3 GB resident (issue 9)", $"{lean.PeakResidentBytes / 1e9:F2} GB", lean.PeakResidentBytes <= 3e9);
        }
        if (leanInBackward is not null)
        {
            Row($"{at}, row-wise without momentum, update in the backward: ≤ 80 ms per 1k tokens (issue 9)", $"{leanInBackward.StepMs:F0} ms", leanInBackward.StepMs <= 80);
            Row($"{at}, row-wise without momentum, update in the backward: ≤ 3 GB resident (issue 9)", $"{leanInBackward.PeakResidentBytes / 1e9:F2} GB", leanInBackward.PeakResidentBytes <= 3e9);
        }
        if (leanest is not null)
        {
            Row($"{at}, bfloat16 tables, row-wise without momentum, update in the backward: ≤ 80 ms per 1k tokens (issue 9)", $"{leanest.StepMs:F0} ms", leanest.StepMs <= 80);
            Row($"{at}, bfloat16 tables, row-wise without momentum, update in the backward: ≤ 3 GB resident (issue 9)", $"{leanest.PeakResidentBytes / 1e9:F2} GB", leanest.PeakResidentBytes <= 3e9);
        }
        if (fused is not null && plain is not null)
        {
            Row($"{at}: ≥ 4× faster than tensor ops + dense AdamW", $"{plain.StepMs / fused.StepMs:F1}×", plain.StepMs >= 4 * fused.StepMs);
            Row($"{at}: ≤ 1/8 of its activation memory",
                $"{Mib(fused.ActivationBytes)} vs {Mib(plain.ActivationBytes)} (1/{(double)plain.ActivationBytes / Math.Max(1, fused.ActivationBytes):F0})",
                fused.ActivationBytes * 8 <= plain.ActivationBytes);
        }
        if (fused is not null && small is not null && smallest < largest)
            Row($"N = {smallest}² → {largest}²: ≤ 1.5× time per token", $"{fused.StepMs / small.StepMs:F2}×", fused.StepMs <= 1.5 * small.StepMs);
        if (fused is not null && equal is not null)
            Row($"{at}: ≤ 2.5× the dense FFW of equal forward FLOPs", $"{fused.StepMs / equal.StepMs:F2}×", fused.StepMs <= 2.5 * equal.StepMs);
        if (lean is not null && equal is not null)
            Row($"{at}, row-wise table state without momentum: ≤ 2× the dense FFW of equal forward FLOPs (issue 9)", $"{lean.StepMs / equal.StepMs:F2}×", lean.StepMs <= 2 * equal.StepMs);
        foreach (var best in new[] { leanInBackward, leanest }.OfType<LayerResult>())
        {
            if (equal is not null)
                Row($"{at}, {Variant(best.Case)}: ≤ 2× the dense FFW of equal forward FLOPs (issue 9)", $"{best.StepMs / equal.StepMs:F2}×", best.StepMs <= 2 * equal.StepMs);
            // Against the same configuration at the smallest N where it ran, else against the fused layer with full AdamW there.
            var sameSmall = layers.FirstOrDefault(r => r.Case.PeerOptions.SubKeyCount == smallest && r.Case == best.Case with { PeerOptions = best.Case.PeerOptions with { SubKeyCount = smallest } });
            var from = sameSmall ?? small;
            if (from is not null && smallest < largest)
                Row($"N = {smallest}² → {largest}², {Variant(best.Case)}{(sameSmall is null ? " (against fused, full AdamW at the smaller N)" : "")}: ≤ 1.5× time per token (issue 9)",
                    $"{best.StepMs / from.StepMs:F2}×", best.StepMs <= 1.5 * from.StepMs);
        }
        foreach (var big in layers.Where(r => r.Case.Kind == LayerKind.PeerFused && r.Case.PeerOptions.SubKeyCount > largest))
            Row($"N = {big.Case.PeerOptions.SubKeyCount}², {Variant(big.Case)}: trains within 12 GB (issue 9)",
                $"{big.PeakResidentBytes / 1e9:F2} GB, {big.StepMs:F0} ms per 1k tokens", big.PeakResidentBytes <= 12e9);
        var peerRuns = models.Where(m => HasPeer(m.Case.Model)).Select(m => m.TokensPerSecond).ToList();
        var denseRuns = models.Where(m => !HasPeer(m.Case.Model)).Select(m => m.TokensPerSecond).ToList();
        if (peerRuns.Count > 0 && denseRuns.Count > 0)
        {
            double ratio = peerRuns.Average() / denseRuns.Average();
            Row("full model with PEER in the middle block: ≥ 70% of the dense model's tokens/s (mean of the runs)",
                $"{100 * ratio:F0}%", ratio >= 0.7);
        }
        var mappedRuns = _generations.Where(g => g.Case.MapTables).ToList();
        var reference = _generations.FirstOrDefault(g => !g.Case.MapTables);
        if (mappedRuns.Count > 0 && reference is not null)
        {
            var largestRun = mappedRuns.MaxBy(g => g.ExpertCounts.DefaultIfEmpty(0).Max())!;
            var largestN = $"N = {string.Join(", ", largestRun.ExpertCounts.Select(Square))}";
            Row($"generation at {largestN}, tables mapped: peak RSS ≤ 4 GB (issue 9)", $"{largestRun.PeakResidentBytes / 1e9:F2} GB", largestRun.PeakResidentBytes <= 4e9);
            Row($"generation at {largestN}, tables mapped: ≥ half the tokens/s at N = {string.Join(", ", reference.ExpertCounts.Select(Square))}, loaded (issue 9)",
                $"{largestRun.TokensPerSecond:F0} vs {reference.TokensPerSecond:F0} tokens/s ({largestRun.TokensPerSecond / reference.TokensPerSecond:P0})",
                largestRun.TokensPerSecond >= 0.5 * reference.TokensPerSecond);
        }
        return s.ToString();
    }

    /// <summary>The whole docs/PERFORMANCE.md.</summary>
    public string Markdown()
    {
        var first = layers.FirstOrDefault()?.Case;
        var s = new StringBuilder();
        s.AppendLine("# Performance");
        s.AppendLine();
        s.AppendLine("Written by `peer bench`; rerun it rather than editing this file. Command:");
        s.AppendLine();
        s.AppendLine($"    {command}");
        s.AppendLine();
        s.AppendLine("## Machine");
        s.AppendLine();
        s.AppendLine(Invariant, $"- CPU: {machine.Cpu}, {machine.Cores} cores ({machine.VectorWidth}); threads used: {first?.Threads ?? models.FirstOrDefault()?.Case.Threads}");
        s.AppendLine(Invariant, $"- Memory: {machine.MemoryGiB:F0} GiB; {machine.Os}; {machine.Runtime}; TorchSharp {machine.TorchSharp}");
        s.AppendLine($"- Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; load average (1, 5, 15 min) at the start: {machine.Load}, at the end: {MachineInfo.LoadAverage()}");
        s.AppendLine("  (the machine is shared: a load above the core count means other work took CPU time from these measurements)");
        s.AppendLine($"- Process settings (`NativeRuntime.Configure` in the `peer` program): OMP_WAIT_POLICY={Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "unset"}, "
                     + $"glibc malloc keeps large blocks; expert tables and their optimizer state ask for huge pages (the kernel's "
                     + $"transparent huge pages: {MachineInfo.TransparentHugePages()})");
        if (first is not null)
        {
            s.AppendLine();
            s.AppendLine(Invariant, $"## One feed-forward layer: d_model = {first.ModelDim}, h = {first.PeerOptions.HeadCount}, k = {first.PeerOptions.TopK}, d_key = {first.PeerOptions.KeyDim}, {first.Tokens} tokens per step");
            s.AppendLine();
            s.AppendLine("Times are medians in **ms per 1k tokens** over the timed steps after warm-up (steps per configuration below);");
            s.AppendLine("each configuration runs in a process of its own. *update* is gradient clipping (global norm 1) + optimizer step;");
            s.AppendLine("*CPU time* is the median CPU time of a step over all threads, also per 1k tokens (about twice the wall time when");
            s.AppendLine("both cores are busy; less disturbed than the wall time by other work on a shared machine);");
            s.AppendLine("*peak RSS* is the process's peak resident memory (runtime, parameters, optimizer state and the step);");
            s.AppendLine("*activations* is the peak resident memory of the first forward above what was resident before it: the tensors");
            s.AppendLine("kept for the backward and the forward's temporaries;");
            s.AppendLine("*step memory* is the peak resident memory during the steps above what was resident before the first one:");
            s.AppendLine("activations, gradients and temporaries, on top of the parameters and optimizer state that live across steps.");
            s.AppendLine();
            s.AppendLine("Layers: (a) dense GELU FFW with 4·d_model hidden units; (b) dense GELU FFW with the PEER layer's forward FLOPs;");
            s.AppendLine("(c) PEER in pure tensor ops (`KernelChoice.Plain`) with dense AdamW; (d) PEER with the fused kernels");
            s.AppendLine("(`KernelChoice.Fused`) and sparse AdamW on the expert tables, with full moments or a row-wise state");
            s.AppendLine("(`TrainConfig.TableState`, docs/SPARSE_UPDATES.md). All use AdamW (β = 0.9, 0.95) on the other parameters.");
            s.AppendLine("*Update in backward* (`TrainConfig.UpdateInBackward`): the tables' optimizer runs inside the backward on each");
            s.AppendLine("gradient row as it is reduced, so their update is in the backward column and no gradient rows are stored.");
            s.AppendLine("*bfloat16 tables* (`PeerOptions.TableStorage`): the tables are stored in bfloat16 and read widened to float32;");
            s.AppendLine("their rows are updated in float32 and rounded back stochastically (docs/SPARSE_UPDATES.md, \"bfloat16 tables\").");
            s.AppendLine();
            s.Append(LayerTable());
            s.AppendLine();
            s.AppendLine("Timed steps (warm-up): " + string.Join(", ", layers.Select(r =>
                $"{Name(r.Case.Kind).Split(' ')[0]}{(r.Case.Kind == LayerKind.DenseFfw ? "" : $" {r.Case.PeerOptions.SubKeyCount}²")}: {r.Case.Steps} ({r.Case.WarmupSteps})")) + ".");
        }
        if (kernels.Count > 0)
        {
            s.AppendLine();
            s.AppendLine("## Kernels: each fast kernel against its plain reference");
            s.AppendLine();
            s.AppendLine("The same random inputs through the tensor-op reference and the fused C# kernel (the tests check that they agree),");
            s.AppendLine("in **ms per 1k tokens** (medians). *Retrieval*: steps 2-3 from given queries; *experts*: step 5 from given ids and");
            s.AppendLine("gates; *table update*: one optimizer step on a table whose gradient holds the rows one step touches, dense AdamW");
            s.AppendLine("on the whole table (plain) against SparseAdamW on the touched rows (fast); its time is in the forward columns.");
            s.AppendLine("*Full → row-wise state*: SparseAdamW with full moments (plain) against the row-wise state without a first moment (fast).");
            s.AppendLine("*Float32 → bfloat16 tables*: the fused experts on float32 tables (plain) against the same kernel on bfloat16 tables (fast).");
            s.AppendLine();
            s.Append(KernelTable());
        }
        if (models.Count > 0)
        {
            var m = models[0].Case;
            var shape = m.Model;
            s.AppendLine();
            s.AppendLine(Invariant, $"## Language model training: {shape.LayerCount} blocks, d_model = {shape.ModelDim}, context {shape.ContextLength}, batch {m.BatchSize} ({m.BatchSize * shape.ContextLength} tokens per step)");
            s.AppendLine();
            s.AppendLine("Full training steps (forward, cross-entropy, backward, clipping, optimizer) on random byte sequences, median of");
            s.AppendLine(Invariant, $"{m.Steps} steps after {m.WarmupSteps} warm-up; the PEER model uses the optimizer `OptimizerFactory` builds (sparse AdamW on the tables).");
            s.AppendLine("The two models run alternately, twice each, so that a change in the machine's load affects both.");
            s.AppendLine();
            s.Append(ModelTable());
        }
        if (_generations.Count > 0)
        {
            var g = _generations[0].Case;
            s.AppendLine();
            s.AppendLine("## Text generation from memory-mapped expert tables");
            s.AppendLine();
            s.AppendLine(Invariant, $"`peer generate` on each checkpoint given to `--generation` ({g.Tokens} tokens after the prompt \"The \", KV cache, one process each),");
            s.AppendLine("its expert tables memory-mapped from the model file (docs/MEMORY_MAPPED.md), and the first checkpoint also loaded");
            s.AppendLine("into memory to compare against. *tokens/s* excludes loading; *own memory* is the process's anonymous memory, *file");
            s.AppendLine("pages* the table rows it read, which are clean page cache the kernel can drop. Speed depends on how much of the");
            s.AppendLine("file the page cache holds: rows not in it are read from disk, one page per row.");
            s.AppendLine();
            s.Append(GenerationTable());
        }
        s.AppendLine();
        s.AppendLine("## Targets");
        s.AppendLine();
        s.Append(TargetTable());
        if (first is not null)
        {
            int largest = layers.Where(r => r.Case.TableState == TableOptimizerState.Full).Max(r => r.Case.PeerOptions.SubKeyCount);
            double tables = 2.0 * largest * largest * first.ModelDim * sizeof(float) / (1024.0 * 1024 * 1024);
            s.AppendLine();
            s.AppendLine("## Reading the numbers");
            s.AppendLine();
            s.AppendLine(Invariant, $"- At N = {largest}² the two expert tables are {tables:F1} GiB and their AdamW moments {2 * tables:F1} GiB (fp32): the parameters");
            s.AppendLine(Invariant, $"  and optimizer state alone are {3 * tables:F1} GiB, so the resident memory of PEER with fp32 Adam state cannot go below that.");
            s.AppendLine("  *Step memory* is what the kernels control: there the fused path holds the touched rows' gradients, no N-sized tensor.");
            s.AppendLine(Invariant, $"  The row-wise table state keeps {tables:F1} GiB of first moment (`row-wise`) or only one float per row");
            s.AppendLine("  (`row-wise-no-momentum`), so those rows go below that floor. Updating the tables in the backward also drops");
            s.AppendLine("  the step's gradient rows of the touched rows (two [U, d_model] buffers), which are most of the step memory.");
            s.AppendLine("- The dense layers are two matrix products on MKL's sgemm, compute-bound; the PEER experts read two random rows per");
            s.AppendLine("  (token, head, expert) and sparse AdamW reads and writes weights, both moments and the gradient of every touched row:");
            s.AppendLine("  at large N the PEER step is bound by memory latency and bandwidth, not by its FLOPs.");
            s.AppendLine("- The machine is shared: compare rows measured close together, and the CPU-time column, rather than runs taken at");
            s.AppendLine("  different loads.");
        }
        return s.ToString();
    }

    LayerResult? Find(LayerKind kind, int subKeys) =>
        layers.FirstOrDefault(r => r.Case.Kind == kind && r.Case.PeerOptions.SubKeyCount == subKeys && r.Case.TableState == TableOptimizerState.Full && !r.Case.UpdateInBackward);

    static bool HasPeer(ModelConfig model) => model.FeedForwardKinds().Contains(FeedForwardKind.Peer);

    /// <summary>A model's row name: its sparse layer and where it sits, or all dense.</summary>
    public static string Name(ModelConfig model) => HasPeer(model)
        ? $"PEER (N = {model.PeerOptions.SubKeyCount}², {EnumNames.Name(model.PeerOptions.Kernel)}) in block(s) {model.SparseBlocks}"
        : "dense (all blocks GELU FFW)";

    /// <summary>Short name of a layer case: its kind, the table state where it is not full AdamW, and the update in the backward.</summary>
    public static string Name(LayerCase c) => Variant(c) is { Length: > 0 } variant ? $"{Name(c.Kind)}, {variant}" : Name(c.Kind);

    /// <summary>A fused layer's choices other than the defaults: table state, update in the backward, bfloat16 tables ("" for none).</summary>
    static string Variant(LayerCase c) => string.Join(", ", new[]
    {
        c.TableState == TableOptimizerState.Full ? null : $"{EnumNames.Name(c.TableState)} state",
        c.UpdateInBackward ? "update in backward" : null,
        c.PeerOptions.TableStorage == ExpertTableStorage.BFloat16 ? "bfloat16 tables" : null,
    }.OfType<string>());

    /// <summary>Short name of a layer kind, with its letter from the issue.</summary>
    public static string Name(LayerKind kind) => kind switch
    {
        LayerKind.DenseFfw => "(a) dense FFW 4·d",
        LayerKind.DenseEqualFlops => "(b) dense FFW, equal FLOPs",
        LayerKind.PeerPlain => "(c) PEER tensor ops + AdamW",
        LayerKind.PeerFused => "(d) PEER fused + sparse AdamW",
        _ => kind.ToString(),
    };

    /// <summary>Short name of a kernel.</summary>
    public static string Name(KernelKind kind) => kind switch
    {
        KernelKind.Retrieval => "product-key retrieval (steps 2-3)",
        KernelKind.Experts => "experts (step 5)",
        KernelKind.TableUpdate => "expert-table update (AdamW)",
        KernelKind.LeanTableUpdate => "expert-table update (full → row-wise state)",
        KernelKind.BFloat16Experts => "experts (step 5), float32 → bfloat16 tables",
        _ => kind.ToString(),
    };

    static string Millions(long count) => (count / 1e6).ToString(count < 10_000_000 ? "F2" : "F0", Invariant) + " M";

    static string Gib(long bytes) => (bytes / (1024.0 * 1024 * 1024)).ToString("F2", Invariant) + " GiB";

    static string Mib(long bytes) => (bytes / (1024.0 * 1024)).ToString("F0", Invariant) + " MiB";
}
