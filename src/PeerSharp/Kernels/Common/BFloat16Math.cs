using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PeerSharp.Kernels;

/// <summary>
/// bfloat16 rows for the kernels (docs/SPARSE_UPDATES.md, "bfloat16 tables"): a bfloat16 is the upper half of a
/// float32, so widening is exact (a shift) and every sum is still taken in float32; only storing rounds. Rounding
/// is to nearest even (optimizer moments) or stochastic (table rows: once the learning rate has decayed, an entry's
/// step falls below half a bfloat16 step of the entry, which rounding to nearest would drop; stochastic rounding
/// keeps each step in expectation). The random bits are a hash of (seed, element), so results are reproducible and
/// do not depend on the thread count.
/// </summary>
internal static unsafe class BFloat16Math
{
    /// <summary>Eight bfloat16 at p, widened to float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(ushort* p)
    {
        // AVX2: one zero-extending load (vpmovzxwd) and a shift; the portable widening takes several shuffles more.
        if (Avx2.IsSupported) return Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();
        var (low, high) = Vector128.Widen(Vector128.Load(p));
        return Vector256.ShiftLeft(Vector256.Create(low, high), 16).AsSingle();
    }

    /// <summary>One bfloat16 widened to float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);

    /// <summary>y[i] = x[i] over n entries: bfloat16 to float32, exactly.</summary>
    public static void Widen(ushort* x, float* y, int n)
    {
        int i = 0;
        for (; i <= n - 8; i += 8) Load(x + i).Store(y + i);
        for (; i < n; i++) y[i] = ToSingle(x[i]);
    }

    /// <summary>float32 → bfloat16, rounded to nearest, ties to even (finite values; the trainer stops on NaN first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort RoundNearest(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>Eight float32 rounded to nearest even, as eight bfloat16 in their lower halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> RoundNearest(Vector256<float> value)
    {
        var bits = value.AsUInt32();
        return Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One), 16);
    }

    /// <summary>Stores eight rounded values (from <see cref="RoundNearest(Vector256{float})"/>) at p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<uint> rounded, ushort* p) => Vector128.Narrow(rounded.GetLower(), rounded.GetUpper()).Store(p);

    /// <summary>
    /// y[i] = x[i] rounded stochastically to one of its two bfloat16 neighbours over n entries: up with probability
    /// equal to x's distance from the lower one over their gap, so E[y] = x. Element i draws its 16 random bits from
    /// a hash of (<paramref name="seed"/>, i); callers make the seed unique per step, table and row.
    /// </summary>
    public static void RoundStochastic(float* x, ushort* y, int n, ulong seed)
    {
        uint key = (uint)(seed ^ (seed >> 32));
        int i = 0;
        var lanes = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        for (; i <= n - 8; i += 8)
        {
            var random = Hash(Vector256.Create(key) + lanes + Vector256.Create((uint)i)) & Vector256.Create(0xFFFFu);
            Store(Vector256.ShiftRightLogical(Vector256.Load(x + i).AsUInt32() + random, 16), y + i);
        }
        for (; i < n; i++)
            y[i] = (ushort)((BitConverter.SingleToUInt32Bits(x[i]) + (Hash(key + (uint)i) & 0xFFFF)) >> 16);
    }

    /// <summary>A per-row seed: distinct for each (seed, row), spread over all 64 bits.</summary>
    public static ulong RowSeed(ulong seed, long row)
    {
        ulong z = seed + 0x9E3779B97F4A7C15ul * (ulong)(row + 1);   // splitmix64
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ul;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBul;
        return z ^ (z >> 31);
    }

    // A 32-bit integer hash (the "lowbias32" finaliser), lane by lane: well mixed low bits from consecutive inputs.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> Hash(Vector256<uint> x)
    {
        x ^= Vector256.ShiftRightLogical(x, 16);
        x *= Vector256.Create(0x7FEB352Du);
        x ^= Vector256.ShiftRightLogical(x, 15);
        x *= Vector256.Create(0x846CA68Bu);
        return x ^ Vector256.ShiftRightLogical(x, 16);
    }

    static uint Hash(uint x)
    {
        x ^= x >> 16;
        x *= 0x7FEB352Du;
        x ^= x >> 15;
        x *= 0x846CA68Bu;
        return x ^ (x >> 16);
    }
}
