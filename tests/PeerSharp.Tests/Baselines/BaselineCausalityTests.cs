using PeerSharp.Layers;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Baselines;

/// <summary>
/// In evaluation a PKM or token-choice model is causal: a position's logits do not depend on later tokens.
/// Expert choice is not (an expert picks among the tokens of the whole sequence); docs/BASELINES.md says so.
/// </summary>
public class BaselineCausalityTests
{
    [Theory]
    [InlineData(FeedForwardKind.Pkm, null)]
    [InlineData(FeedForwardKind.Moe, MoeRouting.TokenChoice)]
    public void LaterTokensDoNotChangeEarlierLogitsInEvaluation(FeedForwardKind kind, MoeRouting? routing)
    {
        using var scope = NewDisposeScope();
        manual_seed(51);
        var config = new ModelConfig
        {
            ContextLength = 12, ModelDim = 16, LayerCount = 2, AttentionHeads = 2, FeedForward = kind,
            PkmOptions = new PkmOptions { SubKeyCount = 6, HeadCount = 2, TopK = 3, KeyDim = 8 },
            MoeOptions = new MoeOptions { ExpertCount = 3, Routing = routing ?? MoeRouting.ExpertChoice, CapacityFactor = 1 },
        };
        using var model = new TransformerLM(config);
        model.train();
        model.forward(randint(0, 256, [4, 12]));   // BatchNorm running statistics away from their defaults
        model.eval();
        var tokens = randint(0, 256, [2, 12]);
        var changed = tokens.clone();
        changed[.., 8..] = randint(0, 256, [2, 4]);
        using var noGrad = no_grad();
        var before = model.forward(tokens);
        var after = model.forward(changed);
        Assert.True(before.narrow(1, 0, 8).allclose(after.narrow(1, 0, 8), rtol: 1e-5, atol: 1e-6));
        Assert.False(before.narrow(1, 8, 4).allclose(after.narrow(1, 8, 4), rtol: 1e-5, atol: 1e-6));
    }
}
