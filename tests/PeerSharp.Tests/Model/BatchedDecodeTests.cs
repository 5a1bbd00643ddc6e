using PeerSharp.Config;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Model;

/// <summary>
/// The batched decoding step (continuous batching): B sequences at their own lengths, each with its own cache, give
/// the logits of their cached forwards, and a sequence's logits are bit-identical alone or beside others.
/// </summary>
public class BatchedDecodeTests
{
    public static TheoryData<string> Models => ["tiny-learned", "tiny-rotary", "preset-tiny"];

    static ModelConfig Config(string name) => name switch
    {
        "tiny-learned" => TinyModel.Config(PositionKind.Learned),
        "tiny-rotary" => TinyModel.Config(PositionKind.Rotary),
        _ => Presets.Get("tiny").Model,   // dense blocks around a PEER block, as the README model
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void DecodeMatchesEachSequencesCachedForward(string name)
    {
        using var scope = NewDisposeScope();
        manual_seed(71);
        var config = Config(name);
        using var model = new TransformerLM(config);
        model.eval();
        using var noGrad = no_grad();
        int[] prompts = [1, 3, 6, 2];
        var tokens = randint(config.VocabSize, [prompts.Length, 10]);
        var caches = prompts.Select(_ => new KvCache(config, 1)).ToList();
        var references = prompts.Select(_ => new KvCache(config, 1)).ToList();
        try
        {
            for (int b = 0; b < prompts.Length; b++)
            {
                model.forward(tokens.narrow(0, b, 1).narrow(1, 0, prompts[b]), caches[b]);
                model.forward(tokens.narrow(0, b, 1).narrow(1, 0, prompts[b]), references[b]);
            }
            for (int step = 0; step < 4; step++)
            {
                var next = stack(prompts.Select((p, b) => tokens[b, p + step]).ToArray());                // (B)
                var logits = model.Decode(next, caches);                                                   // (B, V)
                for (int b = 0; b < prompts.Length; b++)
                {
                    var expected = model.forward(next.narrow(0, b, 1).unsqueeze(0), references[b]).view(-1);   // (V)
                    var difference = (expected - logits[b]).abs().max().item<float>();
                    Assert.True(difference < 1e-4, $"{name}, sequence {b}, step {step}: decoded logits differ by {difference}");
                }
            }
            Assert.Equal(prompts.Select(p => p + 4), caches.Select(c => c.Length));
        }
        finally
        {
            foreach (var cache in caches.Concat(references)) cache.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void ASequenceDecodesBitIdenticallyAloneOrInABatch(string name)
    {
        using var scope = NewDisposeScope();
        manual_seed(72);
        var config = Config(name);
        using var model = new TransformerLM(config);
        model.eval();
        using var noGrad = no_grad();
        const int sequences = 7;   // not a multiple of a matrix kernel's row tile
        var tokens = randint(config.VocabSize, [sequences, 12]);
        var batched = Enumerable.Range(0, sequences).Select(_ => new KvCache(config, 1)).ToList();
        var alone = Enumerable.Range(0, sequences).Select(_ => new KvCache(config, 1)).ToList();
        try
        {
            for (int b = 0; b < sequences; b++)
            {
                model.forward(tokens.narrow(0, b, 1).narrow(1, 0, 1 + b % 4), batched[b]);
                model.forward(tokens.narrow(0, b, 1).narrow(1, 0, 1 + b % 4), alone[b]);
            }
            for (int step = 0; step < 5; step++)
            {
                var next = stack(Enumerable.Range(0, sequences).Select(b => tokens[b, 1 + b % 4 + step]).ToArray());   // (B)
                var together = model.Decode(next, batched);                                               // (B, V)
                for (int b = 0; b < sequences; b++)
                {
                    var single = model.Decode(next.narrow(0, b, 1), [alone[b]]);                          // (1, V)
                    Assert.True(single[0].equal(together[b]).all().item<bool>(), $"{name}, sequence {b}, step {step}: logits alone differ from the batch's");
                }
            }
        }
        finally
        {
            foreach (var cache in batched.Concat(alone)) cache.Dispose();
        }
    }
}
