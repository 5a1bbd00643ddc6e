using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Model;

/// <summary>Generation with the KV cache computes the same logits as running the whole context again.</summary>
public class KvCacheTests
{
    [Theory]
    [InlineData(PositionKind.Learned)]
    [InlineData(PositionKind.Rotary)]
    public void TokenByTokenMatchesFullRecomputation(PositionKind positions)
    {
        using var scope = NewDisposeScope();
        manual_seed(20 + TinyModel.Seed(positions));
        var config = TinyModel.Config(positions);
        using var model = new TransformerLM(config);
        model.eval();
        using var noGrad = no_grad();
        var tokens = randint(config.VocabSize, [2, config.ContextLength]);
        using var cache = new KvCache(config, batchSize: 2);
        const int prompt = 5;

        var prefill = model.forward(tokens.narrow(1, 0, prompt), cache);
        AssertClose(model.forward(tokens.narrow(1, 0, prompt)), prefill, "prefill");
        for (int t = prompt; t < config.ContextLength; t++)
        {
            var step = model.forward(tokens.narrow(1, t, 1), cache);                  // (B, 1, V)
            var full = model.forward(tokens.narrow(1, 0, t + 1));                      // (B, t+1, V)
            AssertClose(full.narrow(1, t, 1), step, $"position {t}");
        }
        Assert.Equal(config.ContextLength, cache.Length);
    }

    [Theory]
    [InlineData(PositionKind.Learned)]
    [InlineData(PositionKind.Rotary)]
    public void ChunksAfterAPrefillMatchFullRecomputation(PositionKind positions)
    {
        using var scope = NewDisposeScope();
        manual_seed(40 + TinyModel.Seed(positions));
        var config = TinyModel.Config(positions);
        using var model = new TransformerLM(config);
        model.eval();
        using var noGrad = no_grad();
        var tokens = randint(config.VocabSize, [2, config.ContextLength]);
        var full = model.forward(tokens);
        using var cache = new KvCache(config, batchSize: 2);

        int start = 0;
        foreach (var length in new[] { 4, 5, 1, 6 })
        {
            var chunk = model.forward(tokens.narrow(1, start, length), cache);
            AssertClose(full.narrow(1, start, length), chunk, $"chunk at {start}");
            start += length;
        }

        // The cache is full: one more token is a user error, not a silent overwrite.
        Assert.Throws<PeerSharpException>(() => model.forward(tokens.narrow(1, 0, 1), cache));
    }

    static void AssertClose(Tensor expected, Tensor actual, string where)
    {
        Assert.Equal(expected.shape, actual.shape);
        var difference = (expected - actual).abs().max().item<float>();
        Assert.True(difference < 1e-5, $"{where}: cached logits differ by {difference}");
    }
}
