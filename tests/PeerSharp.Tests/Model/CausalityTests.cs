using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Model;

/// <summary>
/// In evaluation the model is causal: the logits at a position depend on no later token. (PEER's query BatchNorm
/// uses running statistics there; in training its batch statistics mix positions, the pitfalls of public ports.)
/// </summary>
public class CausalityTests
{
    [Theory]
    [InlineData(PositionKind.Learned)]
    [InlineData(PositionKind.Rotary)]
    public void ChangingATokenChangesNoEarlierLogits(PositionKind positions)
    {
        using var scope = NewDisposeScope();
        manual_seed(TinyModel.Seed(positions));
        var config = TinyModel.Config(positions);
        using var model = new TransformerLM(config);
        model.eval();
        using var noGrad = no_grad();
        var tokens = randint(config.VocabSize, [2, config.ContextLength]);
        var logits = model.forward(tokens);

        foreach (var t in new[] { 0, 1, 7, 15 })
        {
            var changed = tokens.clone();
            changed[.., t] = (changed[.., t] + 1).remainder(config.VocabSize);
            var after = model.forward(changed);

            if (t > 0)
                Assert.True(Difference(logits.narrow(1, 0, t), after.narrow(1, 0, t)) < 1e-6, $"a change at {t} reaches earlier logits");
            Assert.True(Difference(logits.select(1, t), after.select(1, t)) > 1e-3, $"a change at {t} does not reach its own logits");
        }
    }

    static double Difference(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
