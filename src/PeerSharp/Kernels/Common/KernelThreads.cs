using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// How the C# kernels spread work over threads. Work is cut into fixed blocks whose outputs are disjoint and
/// each block is computed in a fixed order, so the result never depends on the thread count or on which
/// thread takes which block: 1 and 2 threads give bit-identical results.
/// </summary>
public static class KernelThreads
{
    /// <summary>The thread count used when a caller gives none: libtorch's intra-op thread count, one knob for both.</summary>
    public static int Default => Math.Max(1, get_num_threads());

    /// <summary>Calls body(start, end) for consecutive blocks of <paramref name="blockSize"/> items of [0, count).</summary>
    internal static void For(int count, int blockSize, int threads, Action<int, int> body)
    {
        int blocks = (count + blockSize - 1) / blockSize;
        if (threads <= 1 || blocks <= 1)
        {
            for (int b = 0; b < blocks; b++) body(b * blockSize, Math.Min(count, (b + 1) * blockSize));
            return;
        }
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = threads },
            b => body(b * blockSize, Math.Min(count, (b + 1) * blockSize)));
    }
}
