using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PeerSharp.Kernels;

/// <summary>
/// The two vector primitives of the fused kernels, over raw memory: dot products and y += α·x, over float32 or
/// (one operand) bfloat16 rows (<see cref="IElementFormat"/>).
/// AVX2 + FMA where the CPU has them (8 lanes), portable Vector256 code otherwise, scalar tails for widths
/// that are not a multiple of 8. Results depend only on the width, never on which thread calls.
/// </summary>
internal static unsafe class VectorMath
{
    /// <summary>Σ a[i]·b[i] over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(float* a, float* b, int n) => Dot<Float32Elements>(a, b, n);

    /// <summary>Σ a[i]·b[i] over n entries, a stored as <typeparamref name="TFormat"/>, b float32; the sum is float32 either way.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot<TFormat>(void* a, float* b, int n) where TFormat : struct, IElementFormat
    {
        byte* p = (byte*)a;
        int size = TFormat.Size, i = 0;
        var s0 = Vector256<float>.Zero;
        var s1 = Vector256<float>.Zero;
        var s2 = Vector256<float>.Zero;
        var s3 = Vector256<float>.Zero;
        // Four independent accumulators hide the FMA latency; rows are 1 KB at d_model = 256.
        for (; i <= n - 32; i += 32)
        {
            s0 = MultiplyAdd(TFormat.Load(p + i * size), Vector256.Load(b + i), s0);
            s1 = MultiplyAdd(TFormat.Load(p + (i + 8) * size), Vector256.Load(b + i + 8), s1);
            s2 = MultiplyAdd(TFormat.Load(p + (i + 16) * size), Vector256.Load(b + i + 16), s2);
            s3 = MultiplyAdd(TFormat.Load(p + (i + 24) * size), Vector256.Load(b + i + 24), s3);
        }
        for (; i <= n - 8; i += 8)
            s0 = MultiplyAdd(TFormat.Load(p + i * size), Vector256.Load(b + i), s0);
        float sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        for (; i < n; i++) sum += TFormat.LoadOne(p + i * size) * b[i];
        return sum;
    }

    /// <summary>y[i] += alpha·x[i] over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy(float* y, float alpha, float* x, int n) => Axpy<Float32Elements>(y, alpha, x, n);

    /// <summary>y[i] += alpha·x[i] over n entries, x stored as <typeparamref name="TFormat"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy<TFormat>(float* y, float alpha, void* x, int n) where TFormat : struct, IElementFormat
    {
        byte* p = (byte*)x;
        int size = TFormat.Size, i = 0;
        var a = Vector256.Create(alpha);
        for (; i <= n - 8; i += 8)
            Vector256.Store(MultiplyAdd(a, TFormat.Load(p + i * size), Vector256.Load(y + i)), y + i);
        for (; i < n; i++) y[i] += alpha * TFormat.LoadOne(p + i * size);
    }

    /// <summary>y[i] = alpha·x[i] over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scale(float* y, float alpha, float* x, int n)
    {
        int i = 0;
        var a = Vector256.Create(alpha);
        for (; i <= n - 8; i += 8)
            Vector256.Store(a * Vector256.Load(x + i), y + i);
        for (; i < n; i++) y[i] = alpha * x[i];
    }

    /// <summary>Asks the cache for the n floats at p (one hint per 64-byte line), ahead of a random row access.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(float* p, int n) => PrefetchBytes(p, n * sizeof(float));

    /// <summary>Asks the cache for the bytes at p (one hint per 64-byte line).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchBytes(void* p, int bytes)
    {
        if (!Sse.IsSupported) return;
        for (int i = 0; i < bytes; i += 64) Sse.Prefetch0((byte*)p + i);
    }

    /// <summary>a·b + c, fused where the CPU can.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : a * b + c;
}
