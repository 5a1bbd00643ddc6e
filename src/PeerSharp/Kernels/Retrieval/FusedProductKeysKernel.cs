using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PeerSharp.Kernels;

/// <summary>
/// The selection and backward of product-key retrieval over raw float32 memory (DESIGN.md "The algorithm", steps 2-3), for
/// <see cref="FusedProductKeys"/>. Per query row (one token and head), with s1 = C q1 and s2 = C' q2:
///
///   forward   top-k of s1 → (best1, a), top-k of s2 → (best2, b); top-k of the k² sums best1[i] + best2[j]
///   backward  dq1 = Σ_s ds·C[a_s], dq2 = Σ_s ds·C'[b_s];  dC[a] = Σ ds·q1, dC'[b] = Σ ds·q2 over the rows that chose it
///
/// The forward scans each row of n scores once with a vector threshold test; the backward touches only the
/// k selected sub-keys per row instead of all n (the tensor-op version back-propagates through dense [M, h, n]
/// score gradients).
/// </summary>
internal static unsafe class FusedProductKeysKernel
{
    const int RowBlock = 16;   // query rows per work item

    /// <summary>
    /// For rows scores1/scores2 [rows, n], writes the final top-k scores [rows, k] (descending) and ids a·n + b.
    /// </summary>
    public static void Select(float* scores1, float* scores2, int rows, int n, int k, float* scores, long* ids, int threads)
    {
        KernelThreads.For(rows, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            float* best1 = stackalloc float[k], best2 = stackalloc float[k], best = stackalloc float[k];
            int* index1 = stackalloc int[k], index2 = stackalloc int[k], pair = stackalloc int[k];
            for (int r = start; r < end; r++)
            {
                TopK(scores1 + (long)r * n, n, k, best1, index1);
                TopK(scores2 + (long)r * n, n, k, best2, index2);
                // Step 3: the k² candidates. Both lists are sorted, so a row (or the rest of one) whose best sum
                // cannot beat the current k-th is skipped.
                int filled = 0;
                for (int i = 0; i < k; i++)
                {
                    if (filled == k && best1[i] + best2[0] <= best[k - 1]) break;
                    for (int j = 0; j < k; j++)
                    {
                        float candidate = best1[i] + best2[j];
                        if (filled == k && candidate <= best[k - 1]) break;
                        filled = Insert(best, pair, k, filled, candidate, i * k + j);
                    }
                }
                for (int s = 0; s < k; s++)
                {
                    scores[(long)r * k + s] = best[s];
                    ids[(long)r * k + s] = (long)index1[pair[s] / k] * n + index2[pair[s] % k];
                }
            }
        });
    }

    /// <summary>
    /// The k largest of row[0..n) with their positions, descending (earlier position first among equals): the k
    /// first in the order (value descending, position ascending). A first pass finds a floor below which no score
    /// can be among them (<see cref="Floor"/>); the scan then inserts only the few scores at or above it, where a
    /// plain streaming scan inserts every score that beats the k-th seen so far, many early in the row. The result
    /// is the same: the scan keeps the top k of the scores it has seen, and it sees all of the row's top k.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void TopK(float* row, int n, int k, float* values, int* positions)
    {
        float floor = Vector256.IsHardwareAccelerated ? Floor(row, n, k) : float.NaN;
        if (!float.IsFinite(floor))
        {
            // Too short a row for the floor, or NaN or infinite scores: the scan of every score.
            TopKStreaming(row, n, k, values, positions);
            return;
        }
        int filled = 0, i = 0;
        for (; i <= n - 8; i += 8)
        {
            // Until k are held, everything at or above the floor enters; then only what beats the k-th.
            var scores = Vector256.Load(row + i);
            uint wins = (filled < k ? Vector256.GreaterThanOrEqual(scores, Vector256.Create(floor))
                                    : Vector256.GreaterThan(scores, Vector256.Create(values[k - 1]))).ExtractMostSignificantBits();
            while (wins != 0)
            {
                int lane = System.Numerics.BitOperations.TrailingZeroCount(wins);
                wins &= wins - 1;
                filled = Consider(values, positions, k, filled, row[i + lane], i + lane, floor);
            }
        }
        for (; i < n; i++) filled = Consider(values, positions, k, filled, row[i], i, floor);
        // At least k scores are at or above the floor, so the list is full; should rounding ever say otherwise, rescan.
        if (filled < k) TopKStreaming(row, n, k, values, positions);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Consider(float* values, int* positions, int k, int filled, float value, int position, float floor) =>
        filled < k ? (value >= floor ? Insert(values, positions, k, filled, value, position) : filled)
                   : (value > values[k - 1] ? Insert(values, positions, k, k, value, position) : filled);

    /// <summary>
    /// A score that at least k scores of the row reach, so that nothing below it is among the k largest: the row's
    /// first R·8·⌊n / (8R)⌋ scores, R = ⌈k / 8⌉, are cut into R ranges of whole vectors, and each lane of each range
    /// holds a disjoint subset; the floor is the smallest of those 8R ≥ k subset maxima (for n = 1024, k = 16: the
    /// smallest of 16 maxima over 64 scores each). NaN where the row is too short (fewer than one vector per range)
    /// or a maximum is NaN; the caller then scans every score.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Floor(float* row, int n, int k)
    {
        int ranges = (k + 7) / 8, vectors = n / (8 * ranges);
        if (vectors == 0) return float.NaN;
        var floor = Vector256.Create(float.PositiveInfinity);
        for (int r = 0; r < ranges; r++)
        {
            float* start = row + (long)r * vectors * 8;
            var max = Vector256.Load(start);
            for (int v = 1; v < vectors; v++) max = Vector256.Max(max, Vector256.Load(start + v * 8));
            floor = Vector256.Min(floor, max);
        }
        float smallest = floor.GetElement(0);
        for (int lane = 1; lane < 8; lane++)
        {
            float value = floor.GetElement(lane);
            if (float.IsNaN(value)) return float.NaN;
            smallest = Math.Min(smallest, value);
        }
        return smallest;
    }

    /// <summary>
    /// <see cref="TopK"/> by a scan of every score: the first k enter, then each score that beats the current k-th
    /// (earlier positions win ties because a later equal score does not beat it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void TopKStreaming(float* row, int n, int k, float* values, int* positions)
    {
        int filled = 0, i = 0;
        for (; i < k; i++) filled = Insert(values, positions, k, filled, row[i], i);
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
            {
                // Most scores lose to the current k-th: test 8 at once, insert only the lanes that win.
                uint wins = Vector256.GreaterThan(Vector256.Load(row + i), Vector256.Create(values[k - 1])).ExtractMostSignificantBits();
                while (wins != 0)
                {
                    int lane = System.Numerics.BitOperations.TrailingZeroCount(wins);
                    wins &= wins - 1;
                    if (row[i + lane] > values[k - 1]) Insert(values, positions, k, k, row[i + lane], i + lane);
                }
            }
        }
        for (; i < n; i++)
            if (row[i] > values[k - 1]) Insert(values, positions, k, k, row[i], i);
    }

    /// <summary>Inserts into the descending list of the best (at most k) values; returns the new fill count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Insert(float* values, int* positions, int k, int filled, float value, int position)
    {
        int p = filled < k ? filled++ : k - 1;
        while (p > 0 && values[p - 1] < value)
        {
            values[p] = values[p - 1];
            positions[p] = positions[p - 1];
            p--;
        }
        values[p] = value;
        positions[p] = position;
        return filled;
    }

    /// <summary>
    /// dq [rows, d_key] from the score gradients [rows, k]: dq1 = Σ ds·C[a], dq2 = Σ ds·C'[b], with
    /// subKeys [2, n, d_key/2] and ids a·n + b [rows, k].
    /// </summary>
    public static void QueryGradient(float* dScores, long* ids, float* subKeys, int rows, int n, int k, int keyDim, float* dQueries, int threads)
    {
        KernelThreads.For(rows, RowBlock, threads, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int half = keyDim / 2;
            float* second = subKeys + (long)n * half;
            for (int r = start; r < end; r++)
            {
                float* dq = dQueries + (long)r * keyDim;
                new Span<float>(dq, keyDim).Clear();
                for (int s = 0; s < k; s++)
                {
                    long id = ids[(long)r * k + s];
                    float ds = dScores[(long)r * k + s];
                    VectorMath.Axpy(dq, ds, subKeys + id / n * half, half);
                    VectorMath.Axpy(dq + half, ds, second + id % n * half, half);
                }
            }
        });
    }
}
