using System.Diagnostics;
using PeerSharp.Config;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace PeerSharp.Benchmarks;

/// <summary>The kernels that have a plain reference beside a fast version (DESIGN.md "Kernels").</summary>
public enum KernelKind
{
    /// <summary>Product-key retrieval, steps 2-3: ProductKeys (tensor ops) against FusedProductKeys.</summary>
    Retrieval,
    /// <summary>The experts, step 5: PlainExperts against FusedExperts.</summary>
    Experts,
    /// <summary>The expert-table update: dense AdamW on the whole table against SparseAdamW on the touched rows.</summary>
    TableUpdate,
    /// <summary>The lean expert-table state: SparseAdamW with full moments against the row-wise state without a first moment.</summary>
    LeanTableUpdate,
    /// <summary>The experts, step 5, on bfloat16 tables: FusedExperts on float32 tables against the same on bfloat16 tables.</summary>
    BFloat16Experts,
}

/// <summary>One kernel micro-benchmark: one kernel, plain or fast, at one size.</summary>
public sealed record KernelCase : TimedCase
{
    /// <summary>Which kernel.</summary>
    public KernelKind Kernel { get; init; }

    /// <summary>The plain reference or the fast version.</summary>
    public KernelChoice Variant { get; init; }
}

/// <summary>Medians per 1k tokens of one kernel case.</summary>
public sealed record KernelResult
{
    /// <summary>What was measured.</summary>
    public required KernelCase Case { get; init; }

    /// <summary>Forward (or, for the table update, the optimizer step) per 1k tokens, ms.</summary>
    public double ForwardMs { get; init; }

    /// <summary>Backward per 1k tokens, ms (0 for the table update).</summary>
    public double BackwardMs { get; init; }
}

/// <summary>
/// Times each fast kernel against its plain reference on the same random inputs, apart from the rest of the
/// layer: the llm.c quartet's benchmark (the agreement tests are in tests/PeerSharp.Tests/Kernels).
/// </summary>
public static class KernelBenchmark
{
    /// <summary>Runs one case.</summary>
    public static KernelResult Run(KernelCase c)
    {
        set_num_threads(c.Threads);
        manual_seed(1);
        var o = c.PeerOptions;
        int M = c.Tokens, d = c.ModelDim, h = o.HeadCount, k = o.TopK;
        long N = o.ExpertCount;
        var fused = c.Variant == KernelChoice.Fused;
        var forward = new List<double>();
        var backward = new List<double>();
        switch (c.Kernel)
        {
            case KernelKind.Retrieval:
            {
                using var subKeys = new Parameter(randn(2, o.SubKeyCount, o.KeyDim / 2) * Math.Sqrt(2.0 / o.KeyDim));
                using var queries = randn(M, h, o.KeyDim).requires_grad_();       // [M, h, d_key]
                using var r = randn(M, h, k);                                      // [M, h, k]
                Time(c, forward, backward, () => (fused ? FusedProductKeys.Retrieve(queries, subKeys, k) : ProductKeys.Retrieve(queries, subKeys, k)).Scores.mul(r).sum(),
                     () => { queries.grad = null; subKeys.grad = null; });
                break;
            }
            case KernelKind.Experts:
            case KernelKind.BFloat16Experts:
            {
                // BFloat16Experts: the fused kernel in both variants, on float32 tables (plain) or bfloat16 ones (fast), which
                // take no gradient: bfloat16 tables are trained with the update in the backward (timed in the layer table), so
                // only their row reads and arithmetic are compared here. The tables are a PEER layer's: drawn as it draws
                // them and on huge pages, as it puts them.
                var storage = c.Kernel == KernelKind.BFloat16Experts;
                using var layer = new Peer(d, o with { TableStorage = storage && fused ? ExpertTableStorage.BFloat16 : ExpertTableStorage.Float32 });
                var (down, up) = (layer.Down.requires_grad_(!storage), layer.Up.requires_grad_(!storage));
                using var x = randn(M, d).requires_grad_();                        // [M, d_model]
                using var ids = randint(N, [M, h, k], dtype: ScalarType.Int64);     // [M, h, k]
                using var gates = randn(M, h, k).softmax(-1).requires_grad_();     // [M, h, k]
                using var r = randn(M, d);                                         // [M, d_model]
                Time(c, forward, backward, () => (fused || storage ? FusedExperts.Forward(x, ids, gates, down, up, o.Activation)
                                                        : PlainExperts.Forward(x, ids, gates, down, up, o.Activation)).mul(r).sum(),
                     () => { x.grad = null; gates.grad = null; down.grad = null; up.grad = null; });
                break;
            }
            case KernelKind.TableUpdate:
            case KernelKind.LeanTableUpdate:
            {
                // The rows one step of M tokens touches: h·k random ids per token, merged (as the fused backward does).
                using var table = new Parameter(randn(N, d));
                using var rows = randint(N, [M * h * k], dtype: ScalarType.Int64).unique().Item1;   // [U]
                using var values = randn(rows.shape[0], d);                                        // [U, d]
                var lean = c.Kernel == KernelKind.LeanTableUpdate;
                using IOptimizer optimizer = lean ? new SparseAdamW([("table", table, 0.1)], state: fused ? TableOptimizerState.RowWiseNoMomentum : TableOptimizerState.Full)
                                           : fused ? new SparseAdamW([("table", table, 0.1)]) : new AdamW([("table", table, 0.1)]);
                for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
                {
                    using var scope = NewDisposeScope();
                    var gradient = sparse_coo_tensor(rows.unsqueeze(0), values, [N, d]);
                    table.grad = fused || lean ? gradient : gradient.to_dense();   // dense AdamW gets what the plain backward gives
                    var t0 = Stopwatch.GetTimestamp();
                    optimizer.Step(1e-3);
                    var t1 = Stopwatch.GetTimestamp();
                    optimizer.ZeroGrad();
                    if (step >= c.WarmupSteps) forward.Add(LayerBenchmark.Milliseconds(t0, t1) * 1000.0 / M);
                }
                break;
            }
        }
        return new KernelResult { Case = c, ForwardMs = LayerBenchmark.Median(forward), BackwardMs = backward.Count > 0 ? LayerBenchmark.Median(backward) : 0 };
    }

    /// <summary>Times forward (building the scalar loss) and backward of <paramref name="loss"/>, per 1k tokens.</summary>
    static void Time(KernelCase c, List<double> forward, List<double> backward, Func<Tensor> loss, Action clearGradients)
    {
        for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
        {
            using var scope = NewDisposeScope();
            var t0 = Stopwatch.GetTimestamp();
            var value = loss();
            var t1 = Stopwatch.GetTimestamp();
            value.backward();
            var t2 = Stopwatch.GetTimestamp();
            clearGradients();
            if (step < c.WarmupSteps) continue;
            forward.Add(LayerBenchmark.Milliseconds(t0, t1) * 1000.0 / c.Tokens);
            backward.Add(LayerBenchmark.Milliseconds(t1, t2) * 1000.0 / c.Tokens);
        }
    }
}
