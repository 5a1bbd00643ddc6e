using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>Raw pointers into CPU tensors for the C# kernels (libtorch memory never moves, so no pinning).</summary>
internal static unsafe partial class TensorMemory
{
    // libtorch's data_ptr(), storage offset included. Not Tensor.bytes: that is a Span, whose int length caps it at
    // 2 GiB, and an expert table of N = 4096² rows at d_model 256 holds 16 GiB.
    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The first element of a contiguous CPU tensor of element type T; null for an empty tensor.</summary>
    public static T* Pointer<T>(Tensor tensor) where T : unmanaged
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new InvalidOperationException("the fused kernels need contiguous CPU tensors");
        if (tensor.element_size() != sizeof(T))
            throw new InvalidOperationException($"tensor of {tensor.dtype} read as {typeof(T).Name}");
        return tensor.numel() == 0 ? null : (T*)THSTensor_data(tensor.Handle);
    }

    /// <summary>The bytes of a contiguous CPU tensor of any element type: its first byte and its length (which may exceed 2 GiB).</summary>
    public static (IntPtr Start, long Length) Bytes(Tensor tensor)
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new InvalidOperationException("raw tensor bytes need a contiguous CPU tensor");
        var length = tensor.numel() * tensor.element_size();
        return (length == 0 ? IntPtr.Zero : THSTensor_data(tensor.Handle), length);
    }

    /// <summary>The bytes of a contiguous CPU tensor as spans of at most <paramref name="chunkBytes"/> each (a Span's length is an int).</summary>
    public static IEnumerable<(IntPtr Start, int Length)> Chunks(Tensor tensor, int chunkBytes = 1 << 30)
    {
        var (start, length) = Bytes(tensor);
        for (long offset = 0; offset < length; offset += chunkBytes)
            yield return (start + (nint)offset, (int)Math.Min(chunkBytes, length - offset));
    }
}
