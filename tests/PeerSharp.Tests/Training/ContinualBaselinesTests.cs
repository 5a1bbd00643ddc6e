using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>The continual-learning baselines of the trainer: experience replay and the L2 pull toward anchor weights.</summary>
public sealed class ContinualBaselinesTests : IDisposable
{
    const int Length = 8;
    readonly TempFolder _temp = new();
    readonly TokenCorpus _text, _replay;

    public ContinualBaselinesTests()
    {
        // Digits and commas for the training text, letters for the replay text: a row's bytes say where it came from.
        _text = TokenCorpus.Build(TextSource.Open(_temp.Write("text.txt", string.Concat(Enumerable.Range(0, 400).Select(i => $"{i:D3},")))), new ByteTokenizer(), _temp.File("cache"));
        _replay = TokenCorpus.Build(TextSource.Open(_temp.Write("replay.txt", string.Concat(Enumerable.Range(0, 400).Select(i => $"{(char)('a' + i % 26)}{(char)('a' + i / 26 % 26)}.")))), new ByteTokenizer(), _temp.File("cache"));
    }

    public void Dispose()
    {
        _text.Dispose();
        _replay.Dispose();
        _temp.Dispose();
    }

    static TrainConfig Train(double replayFraction, long? replayTokens = null) => new() { BatchSize = 8, Seed = 5, ReplayFraction = replayFraction, ReplayTokens = replayTokens };

    [Fact]
    public void ReplayedRowsComeFromTheBufferAndTheOthersAreTheTextsBatchOfThatSize()
    {
        const int bufferTokens = 60;
        var batches = TrainingBatches.Create(Train(0.25, bufferTokens), Length, _text, _replay);   // 2 of 8 rows replayed
        var plain = new BatchSampler(_text, 6, Length, seed: 5);
        long[] buffer = new long[bufferTokens];
        _replay.CopyTokens(0, buffer);
        var bufferText = new string(buffer.Select(t => (char)t).ToArray());
        for (long step = 0; step < 20; step++)
        {
            var (input, target) = batches(step);
            var (expected, expectedTarget) = plain.Batch(step);
            var (again, againTarget) = batches(step);   // a pure function of the step: a resumed run replays the same rows
            using (input) using (target) using (expected) using (expectedTarget) using (again) using (againTarget)
            {
                Assert.Equal(input.data<long>().ToArray(), again.data<long>().ToArray());
                Assert.Equal([8L, Length], input.shape);
                Assert.Equal(expected.data<long>().ToArray(), input.narrow(0, 0, 6).data<long>().ToArray());
                for (int row = 6; row < 8; row++)
                {
                    var window = new string(input[row].data<long>().ToArray().Select(t => (char)t).ToArray());
                    var next = (char)target[row, Length - 1].item<long>();
                    Assert.Contains(window + next, bufferText);   // inside the first 60 tokens, target included
                }
            }
        }
    }

    [Fact]
    public void WithoutAReplayTextAReplayFractionIsRefused()
    {
        var e = Assert.Throws<PeerSharpException>(() => TrainingBatches.Create(Train(0.25), Length, _text, null));
        Assert.Contains("needs a replay text", e.Message);
        Assert.Contains("rounds to no sequence", Assert.Throws<PeerSharpException>(() => Train(0.05).Validate()).Message);
        Assert.Contains("below 1", Assert.Throws<PeerSharpException>(() => Train(1.0).Validate()).Message);
    }

    [Fact]
    public void TheAnchorPullMovesEachTrainableParameterThatFractionOfTheWayToItsAnchor()
    {
        using var model = nn.Sequential(("a", nn.Linear(3, 4)), ("b", nn.Linear(4, 2)));
        var start = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var anchor = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)(p.parameter.detach() + 1.0));
        model.named_parameters().Single(p => p.name == "b.bias").parameter.requires_grad_(false);   // frozen: not pulled

        var pull = AnchorPull.Create(model, anchor, strength: 2.5)!;
        pull.Step(learningRate: 0.2);   // η·λ = 0.5: halfway

        foreach (var (name, parameter) in model.named_parameters())
        {
            using var expected = name == "b.bias" ? start[name].clone() : start[name] + 0.5;
            Assert.True(parameter.detach().allclose(expected, rtol: 0, atol: 1e-6), $"{name} moved {(parameter.detach() - start[name]).mean().item<float>()}");
        }
        Assert.Null(AnchorPull.Create(model, null, strength: 0));
        foreach (var t in start.Values.Concat(anchor.Values)) t.Dispose();
    }

    [Fact]
    public void AnAnchorOfAnotherShapeIsRefused()
    {
        using var model = nn.Sequential(("a", nn.Linear(3, 4)));
        using var small = nn.Sequential(("a", nn.Linear(3, 2)));
        var anchor = small.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        var e = Assert.Throws<PeerSharpException>(() => AnchorPull.Create(model, anchor, strength: 1));
        Assert.Contains("'a.weight'", e.Message);
        Assert.Contains("needs anchor weights", Assert.Throws<PeerSharpException>(() => AnchorPull.Create(model, null, strength: 1)).Message);
    }
}
