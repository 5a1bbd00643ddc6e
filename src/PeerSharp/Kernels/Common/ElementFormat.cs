using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PeerSharp.Kernels;

/// <summary>
/// How the kernels read a row's elements as float32: stored as float32, or as bfloat16 widened on the fly (expert
/// tables, <see cref="ExpertTableStorage"/>). <see cref="VectorMath"/>'s reads are generic over it, so each format
/// gets its own compiled loop and neither pays for the other.
/// </summary>
internal unsafe interface IElementFormat
{
    /// <summary>Bytes of one element.</summary>
    static abstract int Size { get; }

    /// <summary>The eight elements at p, as float32.</summary>
    static abstract Vector256<float> Load(void* p);

    /// <summary>The element at p, as float32.</summary>
    static abstract float LoadOne(void* p);
}

/// <summary>float32 elements.</summary>
internal readonly unsafe struct Float32Elements : IElementFormat
{
    public static int Size => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(void* p) => Vector256.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadOne(void* p) => *(float*)p;
}

/// <summary>bfloat16 elements, widened to float32 exactly (<see cref="BFloat16Math"/>).</summary>
internal readonly unsafe struct BFloat16Elements : IElementFormat
{
    public static int Size => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(void* p) => BFloat16Math.Load((ushort*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadOne(void* p) => BFloat16Math.ToSingle(*(ushort*)p);
}
