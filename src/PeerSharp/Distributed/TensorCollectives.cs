using PeerSharp.Kernels;
using static TorchSharp.torch;

namespace PeerSharp.Distributed;

/// <summary>Collectives on whole CPU tensors, in place (the tensors must be contiguous).</summary>
public static unsafe class TensorCollectives
{
    /// <summary>Replaces <paramref name="tensor"/> (float32, float64 or int64) by its element-wise sum over the ranks.</summary>
    public static void AllReduceSum(this ICommunicator communicator, Tensor tensor)
    {
        if (communicator.Size == 1) return;
        var count = checked((int)tensor.numel());
        switch (tensor.dtype)
        {
            case ScalarType.Float32: communicator.AllReduceSum(new Span<float>(TensorMemory.Pointer<float>(tensor), count)); break;
            case ScalarType.Float64: communicator.AllReduceSum(new Span<double>(TensorMemory.Pointer<double>(tensor), count)); break;
            case ScalarType.Int64: communicator.AllReduceSum(new Span<long>(TensorMemory.Pointer<long>(tensor), count)); break;
            default: throw new ArgumentException($"all-reduce of {tensor.dtype} tensors is not supported");
        }
    }

    /// <summary>Copies rank 0's <paramref name="tensor"/> into every other rank's (same shape and type everywhere).</summary>
    public static void Broadcast(this ICommunicator communicator, Tensor tensor)
    {
        if (communicator.Size == 1) return;
        if (!tensor.is_contiguous()) throw new ArgumentException("broadcast needs a contiguous tensor");
        // In pieces of at most 1 GiB: MPI counts are ints, and a table of N = 4096² rows holds 16 GiB.
        foreach (var (start, length) in TensorMemory.Chunks(tensor))
            communicator.Broadcast(new Span<byte>((void*)start, length), 0);
    }

    /// <summary>
    /// Every tensor of <paramref name="tensors"/> from rank 0, in name order (the names and
    /// shapes must be the same on every rank: the same model and optimizer).
    /// </summary>
    public static void Broadcast(this ICommunicator communicator, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        if (communicator.Size == 1) return;
        using var noGrad = no_grad();
        foreach (var (_, tensor) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
            communicator.Broadcast(tensor);
    }

    /// <summary>Rank 0's values of a few numbers (a step count, a token count).</summary>
    public static long[] Broadcast(this ICommunicator communicator, long[] values)
    {
        if (communicator.Size == 1) return values;
        fixed (long* p = values)
            communicator.Broadcast(new Span<byte>(p, values.Length * sizeof(long)), 0);
        return values;
    }

    /// <summary>Rank 0's text (a configuration); the other ranks pass anything.</summary>
    public static string Broadcast(this ICommunicator communicator, string text)
    {
        if (communicator.Size == 1) return text;
        var bytes = communicator.Rank == 0 ? System.Text.Encoding.UTF8.GetBytes(text) : [];
        var length = communicator.Broadcast(new[] { bytes.LongLength })[0];
        if (communicator.Rank != 0) bytes = new byte[length];
        communicator.Broadcast(bytes, 0);
        return System.Text.Encoding.UTF8.GetString(bytes);
    }

    /// <summary>Every rank's value of one number, in rank order.</summary>
    public static long[] AllGather(this ICommunicator communicator, long value)
    {
        var all = new long[communicator.Size];
        all[communicator.Rank] = value;
        communicator.AllReduceSum(all);   // the other ranks contribute zeros to this slot
        return all;
    }

    /// <summary>
    /// <see cref="ICommunicator.AllToAll"/> of typed elements: <paramref name="sendCounts"/>[r] elements of
    /// <paramref name="send"/> to rank r, <paramref name="receiveCounts"/>[r] from it, in rank order.
    /// </summary>
    public static void AllToAll<T>(this ICommunicator communicator, ReadOnlySpan<T> send, ReadOnlySpan<int> sendCounts, Span<T> receive, ReadOnlySpan<int> receiveCounts)
        where T : unmanaged
    {
        Span<int> sendBytes = stackalloc int[sendCounts.Length], receiveBytes = stackalloc int[receiveCounts.Length];
        for (int r = 0; r < sendCounts.Length; r++) sendBytes[r] = checked(sendCounts[r] * sizeof(T));
        for (int r = 0; r < receiveCounts.Length; r++) receiveBytes[r] = checked(receiveCounts[r] * sizeof(T));
        communicator.AllToAll(System.Runtime.InteropServices.MemoryMarshal.AsBytes(send), sendBytes,
                              System.Runtime.InteropServices.MemoryMarshal.AsBytes(receive), receiveBytes);
    }
}
