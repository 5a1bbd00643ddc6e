using PeerSharp.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

public class SparseRowsTests
{
    [Fact]
    public void CoalesceSumsRepeatedRowsInAFixedOrder()
    {
        using var scope = NewDisposeScope();
        var ids = tensor(new long[] { 5, 1, 5, 0, 1, 5 }).unsqueeze(0);
        var values = randn(6, 9, generator: new Generator(2));
        var gradient = sparse_coo_tensor(ids, values, [8, 9]);
        Assert.False(SparseRows.IsCoalesced(gradient));
        var merged = SparseRows.Coalesce(gradient, threads: 2);
        Assert.True(SparseRows.IsCoalesced(merged));
        Assert.Equal(new long[] { 0, 1, 5 }, merged.SparseIndices.flatten().data<long>().ToArray());
        Assert.True(merged.to_dense().allclose(gradient.to_dense(), rtol: 1e-6, atol: 1e-6));
        var again = SparseRows.Coalesce(gradient, threads: 1);
        Assert.True(again.SparseValues.eq(merged.SparseValues).all().item<bool>());
        Assert.Same(merged, SparseRows.Coalesce(merged));
    }
}
