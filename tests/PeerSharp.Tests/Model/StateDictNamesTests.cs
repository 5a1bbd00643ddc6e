using PeerSharp.Layers;
using PeerSharp.Model;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Model;

/// <summary>
/// Every module's state dict holds each parameter and buffer exactly once, under the documented PyTorch-style
/// names (DESIGN.md "Parameter contract"): TorchSharp also registers module fields under their C# names, which
/// used to put every table into checkpoints two to four times.
/// </summary>
public class StateDictNamesTests
{
    static readonly ModelConfig Small = new()
    {
        ContextLength = 8, ModelDim = 8, LayerCount = 4, AttentionHeads = 2, BlockKinds = "dense,moe,pkm,peer",
        PeerOptions = new PeerOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        PkmOptions = new PkmOptions { SubKeyCount = 4, HeadCount = 2, TopK = 2, KeyDim = 4 },
        MoeOptions = new MoeOptions { ExpertCount = 2 },
    };

    public static TheoryData<string, string[]> Layers => new()
    {
        { "peer", ["query.weight", "query_norm.weight", "query_norm.bias", "query_norm.running_mean", "query_norm.running_var", "query_norm.num_batches_tracked", "keys", "down.weight", "up.weight"] },
        { "pkm", ["query.weight", "query_norm.weight", "query_norm.bias", "query_norm.running_mean", "query_norm.running_var", "query_norm.num_batches_tracked", "keys", "values.weight"] },
        { "expert-choice", ["router.weight", "experts.fc_weight", "experts.fc_bias", "experts.proj_weight", "experts.proj_bias"] },
        { "token-choice", ["router.weight", "experts.fc_weight", "experts.fc_bias", "experts.proj_weight", "experts.proj_bias"] },
        { "dense", ["fc.weight", "fc.bias", "proj.weight", "proj.bias"] },
    };

    static nn.Module<Tensor, Tensor> Layer(string kind) => kind switch
    {
        "peer" => new Peer(8, Small.PeerOptions),
        "pkm" => new ProductKeyMemory(8, Small.PkmOptions),
        "expert-choice" => new ExpertChoiceMoe(8, 16, Small.MoeOptions),
        "token-choice" => new TokenChoiceMoe(8, 16, Small.MoeOptions with { Routing = MoeRouting.TokenChoice }),
        _ => new DenseFeedForward(8, 16),
    };

    [Theory]
    [MemberData(nameof(Layers))]
    public void EachLayerKindHoldsEachTensorOnceUnderItsDocumentedName(string kind, string[] names)
    {
        using var scope = NewDisposeScope();
        using var layer = Layer(kind);
        layer.forward(randn(3, 8));   // TorchSharp registers fields lazily: names must hold after use too
        Assert.Equal(names.Order(), layer.state_dict().Keys.Order());
    }

    [Fact]
    public void TheModelHoldsEachTensorOnceAndItsFileIsTheSizeOfItsTensors()
    {
        using var scope = NewDisposeScope();
        using var model = new TransformerLM(Small);
        model.forward(randint(0, 256, [2, 8]));
        var state = model.state_dict();

        // No C# field name (a leading underscore, a property's backing field) and no tensor under two names.
        Assert.DoesNotContain(state.Keys, name => name.Split('.').Any(part => part.StartsWith('_') || part.Contains("k__BackingField")));
        Assert.Equal(state.Count, state.Values.Select(Address).Distinct().Count());
        var expected = new List<string> { "tok_emb.weight", "pos_emb.weight", "ln_f.weight", "ln_f.bias" };
        foreach (var block in Enumerable.Range(0, 4))
            expected.AddRange(new[] { "ln_attn.weight", "ln_attn.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "ln_ffn.weight", "ln_ffn.bias" }.Select(n => $"blocks.{block}.{n}"));
        var kinds = new[] { "dense", "expert-choice", "pkm", "peer" };
        for (int block = 0; block < 4; block++)
            expected.AddRange(Layers.Single(row => (string)row[0] == kinds[block])[1] is string[] names ? names.Select(n => $"blocks.{block}.ffn.{n}") : []);
        Assert.Equal(expected.Order(), state.Keys.Order());

        using var folder = new TempFolder();
        var path = folder.File("model.safetensors");
        model.save_safetensors(path);
        long tensorBytes = state.Values.Sum(t => t.numel() * t.element_size());
        var fileBytes = new FileInfo(path).Length;
        Assert.InRange(fileBytes, tensorBytes, tensorBytes + 64 * 1024);   // the tensors once, plus a JSON header
    }

    static unsafe long Address(Tensor tensor) =>
        (long)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(tensor.bytes));
}
