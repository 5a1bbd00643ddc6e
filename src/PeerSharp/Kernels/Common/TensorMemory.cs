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
}
