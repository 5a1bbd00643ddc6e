using PeerSharp.Distributed;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using PeerSharp.Tests.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Distributed;

/// <summary>
/// The pieces of data parallelism on two ranks played by two threads (<see cref="ThreadRanks"/>): the gradient
/// exchange averages dense and row-sparse gradients, the query BatchNorm of two half batches is the BatchNorm of
/// the whole batch (forward, gradients, running statistics), and ranks that drifted apart are caught.
/// </summary>
public class DataParallelPiecesTests
{
    [Fact]
    public void TheExchangeAveragesDenseAndRowSparseGradients()
    {
        var results = ThreadRanks.Run(2, ranks =>
        {
            using var scope = NewDisposeScope();
            var dense = new Parameter(zeros(3, 5));
            var table = new Parameter(zeros(10, 2));
            dense.grad = full(3, 5, ranks.Rank + 1.0f);                                   // rank 0: 1, rank 1: 2
            long[] rows = ranks.Rank == 0 ? [1, 4, 1] : [4, 7];                            // uncoalesced on rank 0
            table.grad = sparse_coo_tensor(tensor(rows).view(1, -1), ones(rows.Length, 2) * (ranks.Rank + 1), [10, 2]);
            var exchange = new GradientExchange(ranks, [dense, table], bucketBytes: 16);  // a bucket smaller than the dense gradient
            exchange.Exchange();
            Assert.True(table.grad!.is_sparse);
            return (Dense: dense.grad!.data<float>().ToArray(), Table: table.grad!.to_dense().data<float>().ToArray(),
                    Ids: table.grad.SparseIndices.data<long>().ToArray(), exchange.SparseBytes);
        });

        foreach (var rank in results)
        {
            Assert.All(rank.Dense, v => Assert.Equal(1.5f, v));
            Assert.Equal(new long[] { 1, 4, 7 }, rank.Ids);                              // each row once, ascending
            float[] expected = new float[20];
            expected[2] = expected[3] = 1f;                                               // row 1: (1 + 1) / 2
            expected[8] = expected[9] = 1.5f;                                             // row 4: (1 + 2) / 2
            expected[14] = expected[15] = 1f;                                             // row 7: 2 / 2
            Assert.Equal(expected, rank.Table);
        }
        Assert.Equal(2 * (8 + 2 * 4), results[0].SparseBytes);                           // rank 0 sent its 2 merged rows with their ids
    }

    [Fact]
    public void TheQueryBatchNormOfTwoHalfBatchesIsTheBatchNormOfTheWholeBatch()
    {
        var options = PeerTesting.Small;
        var whole = PeerTesting.Float64Layer(options);
        var state = whole.state_dict().ToDictionary(e => e.Key, e => e.Value.clone());
        var x = randn(8, PeerTesting.SmallModelDim, dtype: ScalarType.Float64);
        var weights = randn(8, PeerTesting.SmallModelDim, dtype: ScalarType.Float64);
        whole.train();
        var xWhole = x.clone().requires_grad_();
        (whole.forward(xWhole) * weights).sum().backward();

        var halves = ThreadRanks.Run(2, ranks =>
        {
            var layer = new Peer(PeerTesting.SmallModelDim, options);
            layer.to(ScalarType.Float64);
            layer.load_state_dict(state);
            layer.train();
            layer.Retrieval.Attach(c => c with { Replicas = ranks });   // for the layer's lifetime
            var rows = x.narrow(0, 4 * ranks.Rank, 4).clone().requires_grad_();
            (layer.forward(rows) * weights.narrow(0, 4 * ranks.Rank, 4)).sum().backward();
            return (Layer: layer, Rows: rows);
        });

        var wholeGrad = xWhole.grad!;
        for (int r = 0; r < 2; r++)
            AssertClose(wholeGrad.narrow(0, 4 * r, 4), halves[r].Rows.grad!, $"input gradient of rank {r}");
        foreach (var name in new[] { "query.weight", "query_norm.weight", "query_norm.bias" })
        {
            var sum = halves[0].Layer.get_parameter(name)!.grad! + halves[1].Layer.get_parameter(name)!.grad!;
            AssertClose(whole.get_parameter(name)!.grad!, sum, name);
        }
        foreach (var name in new[] { "query_norm.running_mean", "query_norm.running_var" })
            for (int r = 0; r < 2; r++)
                AssertClose(whole.state_dict()[name], halves[r].Layer.state_dict()[name], $"{name} of rank {r}");
    }

    [Fact]
    public void RanksWhoseParametersDifferStopTheRun()
    {
        var outcomes = ThreadRanks.Run(2, ranks =>
        {
            using var weights = full(4, 4, ranks.Rank == 1 ? 1.0000001f : 1f);
            try
            {
                ReplicaCheck.Verify(ranks, [new("w", weights)], step: 12);
                return "";
            }
            catch (PeerSharpException e)
            {
                return e.Message;
            }
        });

        Assert.All(outcomes, message => Assert.Contains("the parameters of rank 1 differ from rank 0's after step 12", message));
        var same = ThreadRanks.Run(2, ranks => ReplicaCheck.Verify(ranks, [new("w", ones(4, 4))], step: 1));
        Assert.Equal(same[0], same[1]);
    }

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        var difference = (expected - actual).abs().max().item<double>();
        Assert.True(difference < 1e-10, $"{what} differs by {difference}");
        Assert.True(expected.abs().max().item<double>() > 0, $"{what} is all zeros: nothing was compared");
    }
}
