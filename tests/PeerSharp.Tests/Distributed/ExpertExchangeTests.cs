using PeerSharp.Distributed;
using PeerSharp.ExpertParallel;
using PeerSharp.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Distributed;

/// <summary>
/// Expert parallelism's step 5 on ranks played by threads (<see cref="ThreadRanks"/>): tables sharded by id mod P,
/// each rank with its own tokens (one rank with none), against the fused kernel on all tokens and the whole
/// tables. Outputs, ∂x, ∂gates and the table gradients agree; each rank's table gradient holds exactly its rows that
/// some token of any rank selected (no padding row is touched), so its sparse update is the whole table's.
/// </summary>
public class ExpertExchangeTests
{
    const int Dim = 8, Heads = 2, TopK = 3, Experts = 37;   // N not a multiple of P: the shards differ in size

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void ShardedExpertsComputeWhatTheWholeTablesCompute(int ranks)
    {
        var g = new Generator(7);
        int[] tokens = [.. Enumerable.Range(0, ranks).Select(r => r == 1 ? 0 : 5 + 2 * r)];   // rank 1 brings no tokens
        int all = tokens.Sum();
        var x = randn(all, Dim, generator: g);
        var ids = randint(Experts, [all, Heads, TopK], dtype: ScalarType.Int64, generator: g);
        var gates = rand(all, Heads, TopK, generator: g);
        var down = randn(Experts, Dim, generator: g) * 0.3;
        var up = randn(Experts, Dim, generator: g) * 0.3;
        var weights = randn(all, Dim, generator: g);

        // The whole problem in one process.
        var (xWhole, gatesWhole) = (x.clone().requires_grad_(), gates.clone().requires_grad_());
        var (downWhole, upWhole) = (new Parameter(down.clone()), new Parameter(up.clone()));
        var yWhole = FusedExperts.Forward(xWhole, ids, gatesWhole, downWhole, upWhole, ExpertActivation.Relu);
        (yWhole * weights).sum().backward();

        var results = ThreadRanks.Run(ranks, communicator =>
        {
            using var scope = NewDisposeScope();
            var shards = new ExpertOwners(communicator, Experts);
            var own = arange(communicator.Rank, Experts, ranks);                               // ids r, r + P, …
            var start = tokens.Take(communicator.Rank).Sum();
            var mine = arange(start, start + tokens[communicator.Rank]);
            var xRank = x.index_select(0, mine).requires_grad_();
            var gatesRank = gates.index_select(0, mine).requires_grad_();
            var downRank = new Parameter(down.index_select(0, own));
            var upRank = new Parameter(up.index_select(0, own));
            var y = ExpertExchange.Forward(xRank, ids.index_select(0, mine), gatesRank, downRank, upRank, ExpertActivation.Relu, shards);
            (y * weights.index_select(0, mine)).sum().backward();
            return (Y: y.detach().MoveToOuterDisposeScope(), Dx: xRank.grad!.MoveToOuterDisposeScope(), DGates: gatesRank.grad!.MoveToOuterDisposeScope(),
                    DDown: Global(downRank.grad, own), DUp: Global(upRank.grad, own), shards.BytesSent);
        });

        AssertClose(yWhole, cat(results.Select(r => r.Y).ToList(), 0), "y");
        AssertClose(xWhole.grad!, cat(results.Select(r => r.Dx).ToList(), 0), "dx");
        AssertClose(gatesWhole.grad!, cat(results.Select(r => r.DGates).ToList(), 0), "dgates");
        AssertSameRows(downWhole.grad!, results.Select(r => r.DDown), "ddown");
        AssertSameRows(upWhole.grad!, results.Select(r => r.DUp), "dup");
        Assert.Equal(ExpectedBytes(ids, tokens, ranks), results.Sum(r => r.BytesSent));
    }

    /// <summary>
    /// What docs/DISTRIBUTED.md says the ranks send in a forward and backward: 16 bytes of sizes per pair of ranks; per
    /// (token, remote owner) x, y, ∂y and ∂x (4·d floats) and a count (8 bytes); per remote selection its row, gate
    /// and ∂gate (16 bytes).
    /// </summary>
    static long ExpectedBytes(Tensor ids, int[] tokens, int ranks)
    {
        long bytes = 16L * ranks * (ranks - 1);
        var selections = ids.reshape(ids.shape[0], -1).data<long>().ToArray();
        int width = Heads * TopK;
        for (int m = 0, requester = 0, end = tokens[0]; m < tokens.Sum(); m++)
        {
            while (m >= end) end += tokens[++requester];
            var remote = selections.Skip(m * width).Take(width).Select(id => (int)(id % ranks)).Where(owner => owner != requester).ToList();
            bytes += remote.Distinct().Count() * (4L * Dim * sizeof(float) + sizeof(long)) + remote.Count * 16L;
        }
        return bytes;
    }

    /// <summary>A shard's sparse gradient with its local rows turned into global ids.</summary>
    static (long[] Ids, Tensor Rows) Global(Tensor? gradient, Tensor own)
    {
        if (gradient is null) return ([], zeros(0, Dim).MoveToOuterDisposeScope());
        Assert.True(gradient.is_sparse);
        var merged = SparseRows.Coalesce(gradient);
        var local = merged.SparseIndices[0];
        return (own.index_select(0, local).data<long>().ToArray(), merged.SparseValues.clone().MoveToOuterDisposeScope());
    }

    static void AssertSameRows(Tensor whole, IEnumerable<(long[] Ids, Tensor Rows)> shards, string name)
    {
        var expected = SparseRows.Coalesce(whole);
        var expectedIds = expected.SparseIndices[0].data<long>().ToArray();
        var parts = shards.ToList();
        var ids = parts.SelectMany(p => p.Ids).ToArray();
        Assert.Equal(expectedIds.Order(), ids.Order());                                           // the same touched rows, none more
        var order = ids.Select((id, i) => (id, i)).OrderBy(p => p.id).Select(p => (long)p.i).ToArray();
        var rows = cat(parts.Select(p => p.Rows).ToList(), 0).index_select(0, tensor(order));
        AssertClose(expected.SparseValues, rows, name);
    }

    static void AssertClose(Tensor expected, Tensor actual, string name)
    {
        Assert.Equal(expected.shape, actual.shape);
        var error = (actual - expected).abs().max().item<float>();
        Assert.True(error < 1e-5, $"{name} differs by {error}");
        Assert.True(expected.abs().max().item<float>() > 0, $"{name} is all zeros: nothing was tested");
    }
}
