using PeerSharp.Tests.Layers;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Layers;
using PeerSharp.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Baselines;

/// <summary>Product-key memory (Lample et al. 2019): retrieval against brute force, gradients, contract, usage.</summary>
public class ProductKeyMemoryTests
{
    // d_model 6, N = 4² = 16 values, h 2, k 3, d_key 4.
    static readonly PkmOptions Small = new() { SubKeyCount = 4, HeadCount = 2, TopK = 3, KeyDim = 4 };

    /// <summary>A float64 layer whose BatchNorm affine parameters and running statistics are random too.</summary>
    static ProductKeyMemory Float64Layer(PkmOptions options, int seed)
    {
        manual_seed(seed);
        var pkm = new ProductKeyMemory(6, options);
        pkm.to(ScalarType.Float64);
        using var noGrad = no_grad();
        var state = pkm.state_dict();
        state["query_norm.weight"].uniform_(0.5, 1.5);
        state["query_norm.bias"].normal_(0, 0.5);
        state["query_norm.running_mean"].normal_(0, 0.3);
        state["query_norm.running_var"].uniform_(0.2, 0.8);
        return pkm;
    }

    [Fact]
    public void OutputMatchesBruteForceOverAllKeys()
    {
        using var scope = NewDisposeScope();
        var pkm = Float64Layer(Small, 21);
        pkm.eval();
        var x = randn(5, 6, dtype: ScalarType.Float64);
        var y = pkm.forward(x);

        // Brute force: queries through the running BatchNorm, scored against all N full keys [C_a ; C'_b], id = a·n + b.
        var state = pkm.state_dict();
        var features = x.matmul(state["query.weight"].t());                                                   // [5, h·d_key]
        features = (features - state["query_norm.running_mean"]) / (state["query_norm.running_var"] + 1e-5).sqrt()
                   * state["query_norm.weight"] + state["query_norm.bias"];
        var keys = state["keys"];
        var fullKeys = FullKeys.Of(keys);                                                                  // [16, d_key]
        var expected = zeros(5, 6, dtype: ScalarType.Float64);
        for (int head = 0; head < 2; head++)
        {
            var scores = features.narrow(1, head * 4, 4).matmul(fullKeys.t());                              // [5, 16]
            var (best, ids) = scores.topk(3, dim: -1);                                                       // [5, 3]
            var gates = best.softmax(-1);
            expected += (gates.unsqueeze(-1) * state["values.weight"].index_select(0, ids.flatten()).view(5, 3, 6)).sum(1);
        }
        Assert.True(y.allclose(expected, rtol: 1e-12, atol: 1e-12));
    }

    [Fact]
    public void StateDictFollowsTheContract()
    {
        using var scope = NewDisposeScope();
        var pkm = new ProductKeyMemory(6, Small);
        var shapes = pkm.state_dict().ToDictionary(p => p.Key, p => p.Value.shape);
        Assert.Equal([8L, 6], shapes["query.weight"]);
        foreach (var name in new[] { "query_norm.weight", "query_norm.bias", "query_norm.running_mean", "query_norm.running_var" })
            Assert.Equal([8L], shapes[name]);
        Assert.Equal([2L, 4, 2], shapes["keys"]);
        Assert.Equal([16L, 6], shapes["values.weight"]);
        Assert.Same(pkm.get_parameter("values.weight"), pkm.Values);
    }

    [Fact]
    public void OnlyTheSelectedValuesGetGradients()
    {
        using var scope = NewDisposeScope();
        manual_seed(22);
        var options = Small with { SubKeyCount = 8 };
        var pkm = new ProductKeyMemory(6, options);
        var x = randn(2, 6);
        using var usage = new ExpertUsage(options.ValueCount);
        using var observing = pkm.Retrieval.Attach(c => c with { Observer = usage });
        pkm.forward(x).sum().backward();
        Assert.True(pkm.Values.grad!.is_sparse, "the value table's gradient should hold the rows read, not all N");
        var rowsWithGradient = pkm.Values.grad!.to_dense().abs().sum(1).gt(0).nonzero().flatten().data<long>().ToHashSet();
        Assert.NotEmpty(rowsWithGradient);
        Assert.True(rowsWithGradient.Count <= 2 * 2 * 3, $"{rowsWithGradient.Count} rows have gradients; a forward of 2 tokens reads at most 12");
        Assert.Equal(2 * 2 * 3, usage.Selections);
    }

    [Theory]
    [InlineData(true)]    // BatchNorm with the batch's statistics
    [InlineData(false)]   // BatchNorm with running statistics
    public void GradientsMatchFiniteDifferences(bool training)
    {
        using var scope = NewDisposeScope();
        var pkm = Float64Layer(Small, training ? 23 : 24);
        pkm.train(training);
        var names = GradientCheck.AssertMatchesFiniteDifferences(pkm, randn(5, 6, dtype: ScalarType.Float64));
        string[] expected = ["query.weight", "query_norm.weight", "query_norm.bias", "keys", "values.weight", "input"];
        Assert.Equal(expected.Order(), names.Order());
    }

    [Fact]
    public void EvaluationReportsUsageOfPkmMemories()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var text = folder.Write("text.txt", string.Concat(Enumerable.Repeat("The product-key memory reads a few of its values per token. ", 40)));
        using var corpus = TokenCorpus.Build(TextSource.Open(text), new ByteTokenizer(), folder.File("cache"));
        manual_seed(25);
        var config = new ModelConfig
        {
            ContextLength = 16, ModelDim = 16, LayerCount = 2, AttentionHeads = 2, FeedForward = FeedForwardKind.Pkm,
            PkmOptions = new PkmOptions { SubKeyCount = 8, HeadCount = 2, TopK = 4, KeyDim = 8 },
        };
        using var model = new TransformerLM(config);
        var result = Evaluator.Evaluate(model, corpus, batchSize: 4, maxTokens: 256);
        var layer = Assert.Single(result.Layers);
        Assert.Equal((0, 64L), (layer.Block, layer.ExpertCount));
        Assert.InRange(layer.Usage, 1.0 / 64, 1.0);
        Assert.InRange(layer.Unevenness, 0, Math.Log(64));
    }
}
