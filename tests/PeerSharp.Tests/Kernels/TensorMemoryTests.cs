using PeerSharp.Kernels;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

public unsafe class TensorMemoryTests
{
    [Fact]
    public void PointsIntoTensorsOfMoreThanTwoGibibytes()
    {
        // 2.4 GB of address space, never touched (so never resident): an expert table of N = 4096² is 16 GiB, beyond
        // what a Span-based view (int length) can address.
        using var table = empty(600_000_000);
        float* start = TensorMemory.Pointer<float>(table);
        using var tail = table.narrow(0, 599_999_990, 10);
        Assert.True(start is not null);
        Assert.Equal((nint)(start + 599_999_990), (nint)TensorMemory.Pointer<float>(tail));
        using var none = empty(0);
        Assert.True(TensorMemory.Pointer<float>(none) is null);

        // Collectives and checksums walk such a tensor in spans of at most 1 GiB, end to end.
        var chunks = TensorMemory.Chunks(table).ToList();
        Assert.Equal([1L << 30, 1L << 30, 2_400_000_000L - 2 * (1L << 30)], chunks.Select(c => (long)c.Length));
        Assert.Equal((nint)start, chunks[0].Start);
        Assert.Equal(chunks[0].Start + (1 << 30), chunks[1].Start);
        Assert.Empty(TensorMemory.Chunks(none));
    }
}
