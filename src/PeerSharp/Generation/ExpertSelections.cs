using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Generation;

/// <summary>
/// Expert usage of one PEER or PKM layer over served traffic: how many selections it made and how many distinct
/// experts they reached (one bit per expert, so N = 4096² costs 2 MB, unlike <see cref="Evaluation.ExpertUsage"/>'s
/// gate sums). Observed on the generator's thread, read from any.
/// </summary>
public sealed class ExpertSelections(string layer, long expertCount) : ISelectionObserver
{
    readonly ulong[] _seen = new ulong[(expertCount + 63) / 64];
    long _selections, _distinct;

    /// <summary>The layer's name in the model (its state-dict prefix).</summary>
    public string Layer => layer;

    /// <summary>N.</summary>
    public long ExpertCount => expertCount;

    /// <summary>Expert selections (tokens × heads × k) so far.</summary>
    public long Selections => Interlocked.Read(ref _selections);

    /// <summary>Distinct experts selected at least once.</summary>
    public long Distinct => Interlocked.Read(ref _distinct);

    /// <inheritdoc />
    public void Observe(Tensor ids, Tensor gates)
    {
        using var flat = ids.flatten().contiguous();
        var values = flat.data<long>().ToArray();
        long fresh = 0;
        foreach (var id in values)
        {
            ref var word = ref _seen[id >> 6];
            var bit = 1UL << (int)(id & 63);
            if ((word & bit) == 0)
            {
                word |= bit;
                fresh++;
            }
        }
        Interlocked.Add(ref _selections, values.Length);
        Interlocked.Add(ref _distinct, fresh);
    }
}
