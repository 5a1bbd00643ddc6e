using System.Text;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Benchmarks;

/// <summary>
/// `peer bench --distributed`: the bytes one rank puts on the network per training step for one PEER layer's
/// expert tables under three schemes (docs/DISTRIBUTED.md), from the rows and experts a real forward and backward
/// select (a freshly initialised layer, d_model 256, h 8, k 16, d_key 128, as the layer benchmark):
/// <list type="bullet">
/// <item>dense all-reduce of the table gradients (what data parallelism without sparse gradients sends): 2·N·d
/// floats, ×2(P−1)/P on a ring;</item>
/// <item>row exchange (what `mpirun peer train` does): the touched rows U of this rank, with their ids, for both
/// tables: U·(8 + 2·4·d) bytes (ids sent once per table: 2·8), received from each other rank alike;</item>
/// <item>expert parallel (tables sharded by id mod P, `peer train --expert-parallel`), counted from the selections:
/// per (token, remote owner) x out, y back, ∂y out and ∂x back (4 rows of d floats), and per remote selection its
/// id and gate out and ∂gate back (16 bytes). <c>ExpertExchange</c> sends exactly that plus 8 bytes per (token,
/// remote owner) and 16 per pair of ranks (its test checks the count it measures against this).</item>
/// </list>
/// </summary>
public static class ExchangeVolumeBenchmark
{
    /// <summary>One configuration's volumes, bytes per rank per step.</summary>
    public sealed record Row(long ExpertCount, int TokensPerRank, long TouchedRows, long DenseAllReduce, long RowExchange, IReadOnlyList<(int Ranks, long Bytes)> ExpertParallel);

    /// <summary>Measures every (n, tokens) pair; expert parallel for each P of <paramref name="ranks"/>.</summary>
    public static List<Row> Measure(IEnumerable<int> subKeyCounts, IEnumerable<int> tokenCounts, int[] ranks, int modelDim = 256)
    {
        var rows = new List<Row>();
        foreach (var n in subKeyCounts)
            foreach (var tokens in tokenCounts)
            {
                using var scope = NewDisposeScope();
                manual_seed(1);
                var options = new PeerOptions { SubKeyCount = n, HeadCount = 8, TopK = 16, KeyDim = 128, Kernel = KernelChoice.Fused };
                using var layer = new Peer(modelDim, options);
                layer.train();
                var x = randn(tokens, modelDim);
                layer.forward(x).square().sum().backward();
                var touched = SparseRows.Coalesce(layer.Down.grad!).SparseIndices.numel();
                var ids = SelectedIds(layer, x);                                          // [M, h·k]
                long N = (long)n * n, d = modelDim;
                rows.Add(new Row(N, tokens, touched,
                    DenseAllReduce: 2 * N * d * sizeof(float),
                    RowExchange: touched * (2 * sizeof(long) + 2 * d * sizeof(float)),
                    ExpertParallel: [.. ranks.Select(p => (p, ExpertParallelBytes(ids, p, d)))]));
            }
        return rows;
    }

    /// <summary>The ids the layer selects for <paramref name="x"/>, [M, h·k].</summary>
    static long[][] SelectedIds(Peer layer, Tensor x)
    {
        using var noGrad = no_grad();
        var (_, ids) = layer.Retrieval.Retrieve(layer.Retrieval.Queries(x));
        var flat = ids.reshape(ids.shape[0], -1);
        var values = flat.data<long>().ToArray();
        var width = (int)flat.shape[1];
        return [.. Enumerable.Range(0, (int)flat.shape[0]).Select(m => values.AsSpan(m * width, width).ToArray())];
    }

    /// <summary>Rank 0's traffic when the experts of id mod P = r live on rank r and rank 0 holds these tokens.</summary>
    static long ExpertParallelBytes(long[][] ids, int ranks, long d)
    {
        long bytes = 0;
        foreach (var token in ids)
        {
            var remote = token.Where(id => id % ranks != 0).ToList();
            bytes += remote.Count * 16L;                                                  // id + gate out, ∂gate back
            bytes += remote.Select(id => id % ranks).Distinct().Count() * 4L * d * sizeof(float);
        }
        return bytes;
    }

    /// <summary>The volumes as a markdown table.</summary>
    public static string Markdown(IReadOnlyList<Row> rows)
    {
        var ranks = rows[0].ExpertParallel.Select(e => e.Ranks).ToList();
        var text = new StringBuilder();
        text.AppendLine($"| N | tokens per rank | touched rows U | dense all-reduce of the tables | row exchange (sent) | {string.Join(" | ", ranks.Select(p => $"expert parallel, P = {p}"))} |");
        text.AppendLine($"|---:|---:|---:|---:|---:|{string.Concat(ranks.Select(_ => "---:|"))}");
        foreach (var r in rows)
            text.AppendLine($"| {Experts(r.ExpertCount)} | {r.TokensPerRank:N0} | {r.TouchedRows:N0} | {Megabytes(r.DenseAllReduce)} | {Megabytes(r.RowExchange)} | {string.Join(" | ", r.ExpertParallel.Select(e => Megabytes(e.Bytes)))} |");
        return text.ToString();
    }

    static string Experts(long n) => $"{(long)Math.Sqrt(n)}²";

    static string Megabytes(long bytes) => $"{bytes / 1e6:N1} MB";
}
