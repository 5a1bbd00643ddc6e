using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>The brute-force side of the retrieval tests: all N = n² full keys, built the slow, obvious way.</summary>
static class FullKeys
{
    /// <summary>
    /// The full key table [N, d_key] of sub-keys [2, n, d_key/2]: row a·n + b is [C_a ; C'_b], with C = subKeys[0]
    /// scored by a query's first half (DESIGN.md "The algorithm").
    /// </summary>
    public static Tensor Of(Tensor subKeys)
    {
        long n = subKeys.shape[1], half = subKeys.shape[2];
        var first = subKeys[0].unsqueeze(1).expand(n, n, half);     // [a, b] → C_a
        var second = subKeys[1].unsqueeze(0).expand(n, n, half);    // [a, b] → C'_b
        return cat([first, second], dim: -1).reshape(n * n, 2 * half);
    }
}
