using System.Text;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Growth;
using PeerSharp.Layers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// Growth that routes (DESIGN.md "Growth that routes"): the new domain's tokens reach the grown experts, the old
/// domain's do not, and the gate that ensures the second holds exactly on the queries it was computed from.
public class GrowthRoutingTests
{
    const int OldN = 32, NewN = 48;

    /// Sums of random digits: bytes the bundled books hardly have, so a byte model's queries for them lie apart.
    static string Arithmetic(int seed, int lines)
    {
        var random = new Random(seed);
        var text = new StringBuilder();
        for (int i = 0; i < lines; i++) text.Append($"{random.Next(10000)} + {random.Next(10000)} = {random.Next(20000)};\n");
        return text.ToString();
    }

    [Fact]
    public void TheGateKeepsEveryOldQueryFromSelectingAnExpertWithANewSubKey()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        const int topK = 4;
        var (keys1, keys2) = (randn(16, 6), randn(16, 6));                       // old sub-keys [n, d] per half
        var (queries1, queries2) = (randn(2000, 6), randn(2000, 6));             // old queries [P, d] per half
        var (centres1, centres2) = (randn(8, 6) * 3, randn(8, 6) * 3);           // new sub-keys far out: ungated they win often
        var thresholds = GrowthRouting.Thresholds(queries1.matmul(keys1.t()), queries2.matmul(keys2.t()), topK);
        // The gate protects the queries whose thresholds are positive (a key near zero outscores the others).
        var kept = thresholds[0].gt(0).logical_and(thresholds[1].gt(0)).nonzero().squeeze(1);
        Assert.True(kept.shape[0] > 1500);
        var (q1, q2) = (queries1.index_select(0, kept), queries2.index_select(0, kept));
        Assert.True(AnyGrown(Selected(keys1, centres1, q1, keys2, centres2, q2, topK)), "ungated, some query should select a new sub-key's expert");

        var gated1 = GrowthRouting.Gate(centres1, q1, thresholds[0].index_select(0, kept), margin: 0.1);
        var gated2 = GrowthRouting.Gate(centres2, q2, thresholds[1].index_select(0, kept), margin: 0.1);
        Assert.False(AnyGrown(Selected(keys1, gated1, q1, keys2, gated2, q2, topK)), "gated, no old query may select an expert with a new sub-key");
        foreach (var (gated, centres) in new[] { (gated1, centres1), (gated2, centres2) })
        {
            Assert.True(nn.functional.cosine_similarity(gated, centres, dim: 1).gt(0.9999).all().item<bool>(), "a gated key keeps its centre's direction");
            Assert.True(gated.norm(1).le(centres.norm(1) + 1e-5).all().item<bool>(), "and is never longer than its centre");
            Assert.True(gated.norm(1).gt(0).all().item<bool>(), "the old queries leave every new key some length");
        }
    }

    static bool AnyGrown(Tensor ids) =>
        ids.div(24, rounding_mode: RoundingMode.floor).ge(16).logical_or(ids.remainder(24).ge(16)).any().item<bool>();

    /// Brute force over all 24² pairs: each query's top-k ids a·24 + b, old sub-keys 0…15 and new ones 16…23 in each half.
    static Tensor Selected(Tensor keys1, Tensor new1, Tensor q1, Tensor keys2, Tensor new2, Tensor q2, int topK)
    {
        var s1 = q1.matmul(cat([keys1, new1]).t());                                  // [P, 24]
        var s2 = q2.matmul(cat([keys2, new2]).t());
        return (s1.unsqueeze(2) + s2.unsqueeze(1)).flatten(1).topk(topK, dim: 1).indexes;
    }

    [Fact]
    public void AfterGrowthTheNewDomainReachesTheGrownExpertsAndTheOldDomainKeepsItsOwn()
    {
        using var folder = new TempFolder();
        var newDomain = folder.Write("b.txt", Arithmetic(1, 3000));
        var heldOutNew = folder.Write("b-validation.txt", Arithmetic(2, 300));
        // 32 sub-keys and k = 4, as in any real layer (the tiny preset's 8 and 2 are not): with 8 sub-keys a few queries
        // in a hundred score below zero on all but one, and the gate cannot protect a query whose k-th best score is not positive.
        var tiny = TinyRuns.Config(30);
        var config = tiny with
        {
            Model = tiny.Model with { PeerOptions = tiny.Model.PeerOptions with { SubKeyCount = OldN, TopK = 4 } },
            Train = tiny.Train with { TableState = TableOptimizerState.Full },
        };
        var (model, optimizer) = TrainingSetup.Create(config);
        using var _ = model;
        using var __ = optimizer;
        using (var train = TinyRuns.Train()) new Trainer(config, model, optimizer, train, null, folder.File("ckpt")).Run();

        using var oldValidation = TinyRuns.Validation();
        using var newValidation = TokenCorpus.Open(heldOutNew, TokenizerKind.Byte);
        (GrownRouting OnOld, GrownRouting OnNew) Routing(GrowthOptions options)
        {
            var (grown, grownOptimizer, _) = ExpertGrowth.Grow(model, optimizer, config, options);
            using var ___ = grown;
            using var ____ = grownOptimizer;
            return (GrowthRouting.Measure(grown, config.Model, oldValidation, 8, 16384).Single(), GrowthRouting.Measure(grown, config.Model, newValidation, 8, 8192).Single());
        }

        // Strict gate: held-out old-domain text keeps to the old experts (exactly so on the queries the gate was computed from).
        var routed = new GrowthOptions { SubKeyCount = NewN, Placement = KeyPlacement.Queries, NewDomain = newDomain, OldDomain = BundledCorpus.TrainPath };
        var strict = Routing(routed);
        Assert.True(strict.OnOld.GrownShare < 0.001, $"{strict.OnOld.GrownShare:P3} of the old domain's selections are grown experts");
        // A gate that lets each new sub-key reach 1% of the sampled old queries: the new domain's tokens reach the
        // grown experts, many times more often than the old domain's.
        var leaky = Routing(routed with { GateLeak = 0.01 });
        Assert.True(leaky.OnNew.TokensReachingGrown > 0.3, $"{leaky.OnNew.TokensReachingGrown:P1} of new-domain tokens reach a grown expert");
        Assert.True(leaky.OnNew.GrownShare > 4 * leaky.OnOld.GrownShare, $"grown share {leaky.OnNew.GrownShare:P2} on the new domain, {leaky.OnOld.GrownShare:P2} on the old");

        // The measure can fail: fresh keys at full scale draw the old domain's tokens to grown experts too.
        var random = Routing(new GrowthOptions { SubKeyCount = NewN, NewKeyScale = 1 });
        Assert.True(random.OnOld.GrownShare > 0.1, $"{random.OnOld.GrownShare:P1}");
    }

    [Fact]
    public void PlacingAtQueriesNeedsBothDomainsAndDotProductKeys()
    {
        var model = Presets.Get("tiny").Model;
        var noText = new GrowthOptions { SubKeyCount = NewN, Placement = KeyPlacement.Queries, OldDomain = BundledCorpus.TrainPath };
        Assert.Contains("text of the new domain", Assert.Throws<PeerSharpException>(() => noText.Validate(model)).Message);
        var cosine = model with { PeerOptions = model.PeerOptions with { CosineKeys = true } };
        var both = noText with { NewDomain = BundledCorpus.ValidationPath };
        Assert.Contains("dot-product keys", Assert.Throws<PeerSharpException>(() => both.Validate(cosine)).Message);
    }
}
