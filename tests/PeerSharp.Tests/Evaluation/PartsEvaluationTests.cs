using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Model;
using PeerSharp.Config;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Evaluation;

/// <summary>Scoring a text by parts (a split's books and speeches): each part as on its own, all of them as their token-weighted mean.</summary>
public class PartsEvaluationTests
{
    [Fact]
    public void ThePartsTogetherAreTheTokenWeightedMeanOfThePartsScoredAlone()
    {
        using var folder = new TempFolder();
        // Two parts of different length and kind, so that a plain mean of the two would not be the weighted one.
        var book = folder.Write("books.txt", File.ReadAllText(BundledCorpus.ValidationPath)[..3000]);
        var speech = folder.Write("speeches.txt", string.Concat(Enumerable.Repeat("Fellow-citizens of the Senate and House of Representatives: ", 20)));
        manual_seed(7);
        var config = Presets.Get("tiny").Model;
        using var model = new TransformerLM(config);
        model.train();
        using (no_grad()) model.forward(randint(0, 256, [4, config.ContextLength]));   // BatchNorm running statistics away from their defaults
        using var books = TokenCorpus.Open(book, TokenizerKind.Byte);
        using var speeches = TokenCorpus.Open(speech, TokenizerKind.Byte);

        var scored = Evaluator.EvaluateParts(model, [("books", books), ("speeches", speeches)], batchSize: 4, maxTokens: 2048);
        var alone = new[] { Evaluator.Evaluate(model, books, 4, 2048), Evaluator.Evaluate(model, speeches, 4, 2048) };

        Assert.Equal(["books", "speeches"], scored.Parts.Select(p => p.Name));
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(alone[i].Loss, scored.Parts[i].Result.Loss, 12);
            Assert.Equal(alone[i].Tokens, scored.Parts[i].Result.Tokens);
            Assert.Equal(alone[i].Layers.Single().Usage, scored.Parts[i].Result.Layers.Single().Usage);
        }
        Assert.Equal(2048, alone[0].Tokens);                    // the book part is cut at the budget, the speeches are not
        Assert.True(alone[1].Tokens < 2048);
        var tokens = alone.Sum(a => a.Tokens);
        Assert.Equal(tokens, scored.Together.Tokens);
        Assert.Equal(alone.Sum(a => a.Loss * a.Tokens) / tokens, scored.Together.Loss, 12);
        // Bits per byte together: all bits over all bytes scored.
        Assert.Equal(alone.Sum(a => a.Loss * a.Tokens) / Math.Log(2) / alone.Sum(a => a.Tokens * a.BytesPerToken), scored.Together.BitsPerByte, 12);
        Assert.NotEqual(alone.Average(a => a.BitsPerByte), scored.Together.BitsPerByte, 6);

        // Usage together counts an expert used in either part: at least either part's, at most both added.
        var (usage, inBooks, inSpeeches) = (scored.Together.Layers.Single().Usage, alone[0].Layers.Single().Usage, alone[1].Layers.Single().Usage);
        Assert.True(usage >= Math.Max(inBooks, inSpeeches) && usage <= inBooks + inSpeeches, $"usage together {usage}, books {inBooks}, speeches {inSpeeches}");
        Assert.True(usage > Math.Min(inBooks, inSpeeches));
    }
}
