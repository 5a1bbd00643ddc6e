using PeerSharp.Evaluation;
using PeerSharp.Layers;
using PeerSharp.Tests.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Evaluation;

/// <summary>Usage and unevenness (DESIGN.md "Metrics") against their formulas, worked by hand.</summary>
public class ExpertUsageTests
{
    [Fact]
    public void UsageAndUnevennessFollowTheFormulas()
    {
        using var scope = NewDisposeScope();
        using var usage = new ExpertUsage(6);
        // Two batches; expert 1 is picked twice, expert 4 once with a zero gate (selected but gets no weight).
        usage.Observe(tensor(new long[] { 0, 1, 2, 1 }, [2, 2]), tensor(new[] { 0.5f, 0.5f, 0.75f, 0.25f }, [2, 2]));
        usage.Observe(tensor(new long[] { 3, 4 }, [1, 2]), tensor(new[] { 1f, 0f }, [1, 2]));

        // z' = (0.5, 0.75, 0.75, 1, 0, 0), ‖z'‖₁ = 3.
        double[] z = [0.5 / 3, 0.75 / 3, 0.75 / 3, 1.0 / 3];
        Assert.Equal(4 / 6.0, usage.Usage, 12);
        Assert.Equal(Math.Log(6) + z.Sum(p => p * Math.Log(p)), usage.Unevenness, 12);
    }

    [Fact]
    public void UniformUseHasZeroUnevenness()
    {
        using var scope = NewDisposeScope();
        using var usage = new ExpertUsage(4);
        usage.Observe(tensor(new long[] { 0, 1, 2, 3, 3, 2, 1, 0 }, [4, 2]), full(4, 2, 0.5f));

        Assert.Equal(1.0, usage.Usage, 12);
        Assert.Equal(0.0, usage.Unevenness, 12);
    }

    [Fact]
    public void OneExpertTakingEverythingHasUnevennessLogN()
    {
        using var scope = NewDisposeScope();
        using var usage = new ExpertUsage(16);
        usage.Observe(tensor(new long[] { 5, 5, 5 }, [3]), tensor(new[] { 0.2f, 1f, 0.3f }, [3]));

        Assert.Equal(1 / 16.0, usage.Usage, 12);
        Assert.Equal(Math.Log(16), usage.Unevenness, 12);
    }

    /// A layer with a tracker adds the gates of every token's selections: z'_i = Σ_x g_i(x).
    [Fact]
    public void PeerAddsItsSelectionsToTheTracker()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var options = new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 3, KeyDim = 4 };
        var peer = PeerTesting.Float64Layer(options, modelDim: 8);
        using var usage = new ExpertUsage(options.ExpertCount);
        peer.eval();
        using var observing = peer.Retrieval.Attach(c => c with { Observer = usage });
        var x = randn(3, peer.ModelDim, dtype: ScalarType.Float64);   // 18 picks: some experts stay unused

        peer.forward(x);

        var selected = PeerReference.Of(peer).Forward(PeerReference.Doubles(x), training: false);
        var mass = new double[options.ExpertCount];
        for (int i = 0; i < selected.Ids.Length; i++) mass[selected.Ids[i]] += selected.Gates[i];
        var z = mass.Where(w => w > 0).Select(w => w / mass.Sum()).ToArray();
        Assert.Equal(z.Length / (double)options.ExpertCount, usage.Usage, 12);
        Assert.Equal(Math.Log(options.ExpertCount) + z.Sum(p => p * Math.Log(p)), usage.Unevenness, 10);
    }

    /// Ids a·n + b split into the two halves' sub-keys; first choices are counted per head.
    [Fact]
    public void SubKeysOfEachHalfAndFirstChoicesAreCounted()
    {
        using var scope = NewDisposeScope();
        using var usage = new ExpertUsage(16);   // n = 4
        // Two tokens, two heads, k = 2, best first: (a, b) = (0,1) (0,2) | (1,1) (3,1), then (0,1) (2,2) | (1,0) (1,1).
        usage.Observe(tensor(new long[] { 1, 2, 5, 13, 1, 10, 4, 5 }, [2, 2, 2]), full(2, 2, 2, 0.5f));

        Assert.Equal(6 / 16.0, usage.Usage, 12);
        var (first, second) = (usage.Halves![0], usage.Halves[1]);
        Assert.Equal(4 / 4.0, first.Usage, 12);     // a ∈ {0, 1, 2, 3}
        Assert.Equal(3 / 4.0, second.Usage, 12);    // b ∈ {0, 1, 2}
        // Half 1 gate mass per a: a=0: 1.5, a=1: 1.5, a=2: 0.5, a=3: 0.5 (of 4).
        double[] z = [1.5 / 4, 1.5 / 4, 0.5 / 4, 0.5 / 4];
        Assert.Equal(Math.Log(4) + z.Sum(p => p * Math.Log(p)), first.Unevenness, 12);
        Assert.Equal(1.5, usage.FirstChoices, 12);  // head 0: {1}; head 1: {5, 4}
    }
}
