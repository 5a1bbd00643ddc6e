using PeerSharp.Kernels;
using static TorchSharp.torch;

namespace PeerSharp.Distributed;

/// <summary>
/// Checks that every rank holds the same parameters, bit for bit (data parallelism keeps them so: every rank
/// applies the same update to the same weights). A difference means the ranks trained different models from
/// there on, so it stops the run.
/// </summary>
public static class ReplicaCheck
{
    /// <summary>A 64-bit checksum of the tensors' bytes, in name order.</summary>
    public static unsafe ulong Checksum(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (var (name, tensor) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            using var contiguous = tensor.contiguous();
            // In pieces of a multiple of 8 bytes, so that the words are the same however the tensor is cut.
            foreach (var (start, length) in TensorMemory.Chunks(contiguous))
            {
                var bytes = new ReadOnlySpan<byte>((void*)start, length);
                var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes);
                foreach (var word in words) hash = Mix(hash ^ word);
                for (int i = words.Length * sizeof(ulong); i < bytes.Length; i++) hash = Mix(hash ^ bytes[i]);
            }
        }
        return hash;
    }

    /// <summary>
    /// Compares the checksum of <paramref name="tensors"/> across the ranks and returns it; a
    /// <see cref="PeerSharpException"/> on every rank when they differ.
    /// </summary>
    public static ulong Verify(ICommunicator communicator, IEnumerable<KeyValuePair<string, Tensor>> tensors, long step)
    {
        var checksum = Checksum(tensors);
        var all = communicator.AllGather((long)checksum);
        var differing = Enumerable.Range(0, all.Length).Where(r => all[r] != all[0]).ToList();
        if (differing.Count > 0)
            throw new PeerSharpException($"the parameters of rank {differing[0]} differ from rank 0's after step {step} (checksums {all[0]:x16} and {all[differing[0]]:x16}); the ranks no longer train the same model, so the run stops; resume from the last checkpoint");
        return checksum;
    }

    static ulong Mix(ulong z)
    {
        z *= 0x9E3779B97F4A7C15UL;
        return z ^ (z >> 29);
    }
}
