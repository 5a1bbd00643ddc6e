using PeerSharp.Evaluation;
using PeerSharp.Layers;
using PeerSharp.Model;
using PeerSharp.Tests.Cli;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Flops;

/// <summary>
/// The FLOP formulas against the multiply-adds a forward really executes.
/// <para>
/// How the executed count is taken. TorchSharp has no operator-level profiler, and module hooks fire only through
/// call(), which the layers do not use for their inner products. So each test runs a real training-mode forward and
/// reads the shapes it used from the layers' own run-time reports: the routing record of an MoE layer (groups,
/// capacity: how many token slots each expert computed) and the selections a usage tracker receives from PEER and
/// PKM (how many rows were read). With the parameter shapes, it multiplies out every matrix product of the
/// forward, an [m, n] · [n, p] product being m·n·p multiply-adds. The formulas, in turn, see only the config.
/// </para>
/// </summary>
public class FlopCounterTests
{
    const int Batch = 2, Length = 8, Tokens = Batch * Length;

    // Capacities divide exactly: expert choice C = 2 · 16 / 4 = 8; token choice C = 1.5 · 2 · 16 / 4 = 12.
    static readonly ModelConfig Small = new()
    {
        ContextLength = Length, ModelDim = 8, LayerCount = 1, AttentionHeads = 2, VocabSize = 256,
        PeerOptions = new PeerOptions { SubKeyCount = 6, HeadCount = 3, TopK = 4, KeyDim = 10 },
        PkmOptions = new PkmOptions { SubKeyCount = 5, HeadCount = 2, TopK = 3, KeyDim = 6 },
        MoeOptions = new MoeOptions { ExpertCount = 4, CapacityFactor = 2, TopK = 2 },
    };

    public static TheoryData<FeedForwardKind, MoeRouting> Kinds => new()
    {
        { FeedForwardKind.Dense, MoeRouting.ExpertChoice },
        { FeedForwardKind.Moe, MoeRouting.ExpertChoice },
        { FeedForwardKind.Moe, MoeRouting.TokenChoice },
        { FeedForwardKind.Pkm, MoeRouting.ExpertChoice },
        { FeedForwardKind.Peer, MoeRouting.ExpertChoice },
    };

    static ModelConfig ConfigFor(FeedForwardKind kind, MoeRouting routing) => Small with
    {
        FeedForward = kind,
        MoeOptions = routing == MoeRouting.TokenChoice ? Small.MoeOptions with { Routing = routing, CapacityFactor = 1.5 } : Small.MoeOptions,
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void FormulaMatchesTheMultiplyAddsAForwardExecutes(FeedForwardKind kind, MoeRouting routing)
    {
        using var scope = NewDisposeScope();
        manual_seed(41);
        var config = ConfigFor(kind, routing);
        using var model = new TransformerLM(config);
        var layer = model.Blocks[0].FeedForward;
        using var usage = layer is IExpertRetrieval retrieval ? new ExpertUsage(retrieval.ExpertCount) : null;
        using var observing = layer is IExpertRetrieval r ? r.Retrieval.Attach(c => c with { Observer = usage }) : null;
        layer.train();
        layer.forward(randn(Batch, Length, config.ModelDim));

        var shape = layer.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        long Count(string name) => shape[name].Aggregate(1L, (a, b) => a * b);
        long d = config.ModelDim;
        long executed = layer switch
        {
            // x W_fcᵀ, then hidden W_projᵀ.
            DenseFeedForward => Tokens * Count("fc.weight") + Tokens * Count("proj.weight"),
            // Router x W_gᵀ, then each expert's two products over the slots it computed (groups × capacity).
            ExpertChoiceMoe moe => Tokens * Count("router.weight")
                + moe.LastRouting!.Groups * moe.LastRouting.Capacity * (Count("experts.fc_weight") + Count("experts.proj_weight")),
            TokenChoiceMoe moe => Tokens * Count("router.weight")
                + moe.LastRouting!.Groups * moe.LastRouting.Capacity * (Count("experts.fc_weight") + Count("experts.proj_weight")),
            // Queries, each head's query halves against all sub-keys ([2, n, d_key/2] = n·d_key per head), then per
            // selection one value row summed in (PKM) or u · x and g·σ·v (PEER).
            ProductKeyMemory => Tokens * Count("query.weight") + Tokens * Heads(shape) * Count("keys") + usage!.Selections * d,
            Peer => Tokens * Count("query.weight") + Tokens * Heads(shape) * Count("keys") + usage!.Selections * 2 * d,
            _ => throw new InvalidOperationException(layer.GetType().Name),
        };

        var formula = FlopCounter.FeedForward(config, kind).Where(l => l.MatrixProducts).Sum(l => l.Flops) * Tokens;
        Assert.Equal(FlopCounter.FlopsPerMultiplyAdd * executed, formula, 6);
    }

    // h = rows of the stacked query networks / d_key, with d_key = 2 · the sub-key half width.
    static long Heads(Dictionary<string, long[]> shape) => shape["query.weight"][0] / (2 * shape["keys"][2]);

    [Theory]
    [MemberData(nameof(Kinds))]
    public void ParameterCountsMatchTheModel(FeedForwardKind kind, MoeRouting routing)
    {
        var config = ConfigFor(kind, routing) with { LayerCount = 3 };
        using var model = new TransformerLM(config);
        var (total, active) = FlopCounter.Parameters(config);
        Assert.Equal(model.parameters().Sum(p => p.numel()), total);
        if (kind == FeedForwardKind.Dense) Assert.Equal(total, active);
        else Assert.InRange(active, 1, total);
    }

    [Fact]
    public void ParameterCountsFollowUntiedHeadsAndRotaryPositions()
    {
        var config = Small with { TieEmbeddings = false, Positions = PositionKind.Rotary, FeedForward = FeedForwardKind.Pkm };
        using var model = new TransformerLM(config);
        Assert.Equal(model.parameters().Sum(p => p.numel()), FlopCounter.Parameters(config).Total);
    }

    [Fact]
    public void TrainingIsThreeForwardsAndABudgetBuysWholeSteps()
    {
        var config = Small with { FeedForward = FeedForwardKind.Peer };
        var report = FlopCounter.Of(config);
        Assert.Equal(3 * report.ForwardFlopsPerToken, report.TrainingFlopsPerToken);
        Assert.Equal(report.TrainingFlopsPerToken * 4 * Length, report.TrainingFlopsPerStep(4));
        Assert.Equal(10, report.StepsForBudget(10.5 * report.TrainingFlopsPerStep(4), 4));

        // Attention's share grows with the context; everything else is per token.
        var longer = FlopCounter.Of(config with { ContextLength = 2 * Length });
        Assert.Equal(Small.LayerCount * 2.0 * 2 * Length * Small.ModelDim, longer.ForwardFlopsPerToken - report.ForwardFlopsPerToken);
    }

    [Fact]
    public void FlopsCommandPrintsTheBreakdownAndTheStepsOfABudget()
    {
        using var folder = new TempFolder();
        var run = PeerProcess.Run(folder.Path, "flops", "--preset", "tiny", "--ffn", "pkm", "--budget", "1e12");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("PKM sub-key scores", run.Output);
        Assert.Contains("forward, per token", run.Output);
        Assert.Matches(@"buys [\d,]+ steps", run.Output);
    }
}
