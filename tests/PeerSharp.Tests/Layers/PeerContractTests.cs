using System.Buffers.Binary;
using System.Text.Json;
using PeerSharp.Layers;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>
/// The public contract (DESIGN.md "Parameter contract"): state-dict names and shapes, loading a PyTorch-written safetensors file, and
/// a forward that matches the five steps computed independently.
/// </summary>
public class PeerContractTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void StateDictNamesAndShapesAreThoseOfTheSpecification(bool batchNorm)
    {
        using var scope = NewDisposeScope();
        var options = new PeerOptions { SubKeyCount = 5, HeadCount = 3, TopK = 2, KeyDim = 4, QueryBatchNorm = batchNorm };
        using var peer = new Peer(6, options);

        var expected = new Dictionary<string, long[]>
        {
            ["query.weight"] = [3 * 4, 6],
            ["keys"] = [2, 5, 2],
            ["down.weight"] = [25, 6],
            ["up.weight"] = [25, 6],
        };
        if (batchNorm)
            foreach (var name in new[] { "weight", "bias", "running_mean", "running_var" })
                expected[$"query_norm.{name}"] = [3 * 4];

        // PyTorch's BatchNorm1d also saves query_norm.num_batches_tracked, a scalar.
        var state = peer.state_dict();
        if (batchNorm && state.Remove("query_norm.num_batches_tracked", out var count))
            Assert.Empty(count.shape);
        Assert.Equal(expected.Keys.Order(), state.Keys.Order());
        foreach (var (name, shape) in expected) Assert.Equal(shape, state[name].shape);

        // Running statistics are buffers; everything else trains.
        var trained = expected.Keys.Where(name => !name.Contains("running_")).Order();
        Assert.Equal(trained, peer.named_parameters().Select(p => p.name).Order());
    }

    /// The five steps of DESIGN.md "The algorithm" in plain loops agree with the layer, in every mode.
    [Theory]
    [InlineData(ExpertActivation.Gelu, false, false)]
    [InlineData(ExpertActivation.Relu, false, false)]
    [InlineData(ExpertActivation.Gelu, true, false)]
    [InlineData(ExpertActivation.Relu, true, false)]
    [InlineData(ExpertActivation.Gelu, true, true)]
    [InlineData(ExpertActivation.Relu, true, true)]
    public void ForwardMatchesThePlainReference(ExpertActivation activation, bool batchNorm, bool training)
    {
        using var scope = NewDisposeScope();
        manual_seed(50 + (int)activation + (batchNorm ? 2 : 0) + (training ? 4 : 0));
        var options = new PeerOptions { SubKeyCount = 8, HeadCount = 3, TopK = 3, KeyDim = 6, Activation = activation, QueryBatchNorm = batchNorm };
        var peer = PeerTesting.Float64Layer(options, modelDim: 5);
        peer.train(training);
        var x = randn(4, 3, peer.ModelDim, dtype: ScalarType.Float64);
        var reference = PeerReference.Of(peer).Forward(PeerReference.Doubles(x), training);

        var y = peer.forward(x);

        Assert.Equal(x.shape, y.shape);
        Assert.True(reference.SelectionMargin > 1e-9, "the seed gives a tie in the top-k");
        Assert.True(PeerTesting.MaxAbsDifference(reference.Output, PeerReference.Doubles(y)) < 1e-10);
    }

    /// A checkpoint written by PyTorch code (safetensors, float32, with num_batches_tracked) loads under the
    /// contract's names, and the loaded layer computes the paper's function of those values.
    [Fact]
    public void LoadsAPyTorchSafetensorsCheckpoint()
    {
        using var scope = NewDisposeScope();
        var options = new PeerOptions { SubKeyCount = 3, HeadCount = 2, TopK = 2, KeyDim = 4 };
        const int features = 2 * 4, experts = 9;
        var random = new Random(20240707);
        float[] Values(int count, double low, double high) =>
            Enumerable.Range(0, count).Select(_ => (float)(low + (high - low) * random.NextDouble())).ToArray();
        var values = new Dictionary<string, (long[] Shape, float[] Data)>
        {
            ["query.weight"] = ([features, 4], Values(features * 4, -1, 1)),
            ["query_norm.weight"] = ([features], Values(features, 0.5, 1.5)),
            ["query_norm.bias"] = ([features], Values(features, -0.5, 0.5)),
            ["query_norm.running_mean"] = ([features], Values(features, -0.3, 0.3)),
            ["query_norm.running_var"] = ([features], Values(features, 0.3, 1.2)),
            ["keys"] = ([2, 3, 2], Values(2 * 3 * 2, -1, 1)),
            ["down.weight"] = ([experts, 4], Values(experts * 4, -1, 1)),
            ["up.weight"] = ([experts, 4], Values(experts * 4, -1, 1)),
        };
        var path = Path.Combine(Path.GetTempPath(), $"peer-contract-{Guid.NewGuid():N}.safetensors");
        try
        {
            WriteSafetensors(path, values, batchesTracked: 12);
            using var peer = new Peer(4, options);

            peer.load_safetensors(path);

            var state = peer.state_dict();
            foreach (var (name, (shape, data)) in values)
            {
                Assert.Equal(shape, state[name].shape);
                Assert.Equal(data, state[name].data<float>().ToArray());
            }
            Assert.Equal(12, state["query_norm.num_batches_tracked"].item<long>());

            peer.eval();
            var x = Values(5 * 4, -2, 2);
            var y = peer.forward(tensor(x, [5, 4]));
            var expected = new PeerReference
            {
                Options = options,
                ModelDim = 4,
                Query = Widen(values["query.weight"].Data),
                NormWeight = Widen(values["query_norm.weight"].Data),
                NormBias = Widen(values["query_norm.bias"].Data),
                RunningMean = Widen(values["query_norm.running_mean"].Data),
                RunningVar = Widen(values["query_norm.running_var"].Data),
                Keys = Widen(values["keys"].Data),
                Down = Widen(values["down.weight"].Data),
                Up = Widen(values["up.weight"].Data),
            }.Forward(Widen(x), training: false);
            Assert.True(expected.SelectionMargin > 1e-3, "the values give a near tie in the top-k");
            Assert.True(PeerTesting.MaxAbsDifference(expected.Output, PeerReference.Doubles(y)) < 1e-5);
        }
        finally
        {
            File.Delete(path);
        }
    }

    static double[] Widen(float[] values) => values.Select(v => (double)v).ToArray();

    /// <summary>
    /// A safetensors file as the Python library writes it: an 8-byte little-endian header length, a JSON header
    /// {name: {dtype, shape, data_offsets: [begin, end]}} with "__metadata__", then the raw little-endian data.
    /// </summary>
    static void WriteSafetensors(string path, Dictionary<string, (long[] Shape, float[] Data)> tensors, long batchesTracked)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        var data = new MemoryStream();
        var buffer = new byte[8];
        foreach (var (name, (shape, values)) in tensors)
        {
            var begin = data.Length;
            foreach (var v in values)
            {
                BinaryPrimitives.WriteSingleLittleEndian(buffer, v);
                data.Write(buffer, 0, 4);
            }
            header[name] = new { dtype = "F32", shape, data_offsets = new[] { begin, data.Length } };
        }
        var countBegin = data.Length;
        BinaryPrimitives.WriteInt64LittleEndian(buffer, batchesTracked);
        data.Write(buffer, 0, 8);
        header["query_norm.num_batches_tracked"] = new { dtype = "I64", shape = Array.Empty<long>(), data_offsets = new[] { countBegin, data.Length } };

        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        using var file = File.Create(path);
        BinaryPrimitives.WriteUInt64LittleEndian(buffer, (ulong)json.Length);
        file.Write(buffer, 0, 8);
        file.Write(json);
        data.Position = 0;
        data.CopyTo(file);
    }
}
