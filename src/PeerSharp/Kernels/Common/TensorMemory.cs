using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>Raw pointers into CPU tensors for the C# kernels (libtorch memory never moves, so no pinning).</summary>
internal static unsafe class TensorMemory
{
    /// <summary>The first element of a contiguous CPU tensor of element type T.</summary>
    public static T* Pointer<T>(Tensor tensor) where T : unmanaged
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new InvalidOperationException("the fused kernels need contiguous CPU tensors");
        if (tensor.element_size() != sizeof(T))
            throw new InvalidOperationException($"tensor of {tensor.dtype} read as {typeof(T).Name}");
        var bytes = tensor.bytes;
        return bytes.IsEmpty ? null : (T*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes));
    }
}
