using PeerSharp.Layers;
using PeerSharp.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Baselines;

/// <summary>Training steps of the baseline layers leave no tensor behind (the token-choice layer keeps exactly one auxiliary loss).</summary>
public class BaselineMemoryTests
{
    [Theory]
    [InlineData(FeedForwardKind.Moe, MoeRouting.ExpertChoice)]
    [InlineData(FeedForwardKind.Moe, MoeRouting.TokenChoice)]
    [InlineData(FeedForwardKind.Pkm, null)]
    public void LiveTensorsStayFlatAcrossTrainingSteps(FeedForwardKind kind, MoeRouting? routing)
    {
        manual_seed(61);
        var config = new ModelConfig
        {
            ContextLength = 8, ModelDim = 16, LayerCount = 2, AttentionHeads = 2, FeedForward = kind,
            PkmOptions = new PkmOptions { SubKeyCount = 6, HeadCount = 2, TopK = 3, KeyDim = 8 },
            MoeOptions = new MoeOptions { ExpertCount = 3, Routing = routing ?? MoeRouting.ExpertChoice },
        };
        using var model = new TransformerLM(config);
        model.train();
        var live = new List<long>();
        for (int step = 0; step < 6; step++)
        {
            using (var scope = NewDisposeScope())
            {
                var tokens = randint(0, 256, [2, 8]);
                model.Loss(tokens, tokens).backward();
            }
            live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        }
        Assert.All(live.Skip(2), count => Assert.Equal(live[1], count));
    }
}
