using PeerSharp.Layers;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>
/// DESIGN.md "Initialisation": N(0, 1) expert tables make the output hundreds of times the input; at initialisation the PEER output
/// must have the magnitude of a dense FFW's.
/// </summary>
public class PeerInitTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OutputAtInitialisationIsTheSizeOfADenseFeedForwardOutput(bool training)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        const int modelDim = 128;
        using var peer = new Peer(modelDim, new PeerOptions());     // N = 128², h 8, k 16, d_key 128
        using var dense = new DenseFeedForward(modelDim, 4 * modelDim);
        peer.train(training);
        dense.train(training);
        var x = randn(2, 128, modelDim);                                          // unit RMS

        using var noGrad = no_grad();
        var peerRms = Rms(peer.forward(x));
        var denseRms = Rms(dense.forward(x));

        Assert.InRange(peerRms / denseRms, 1 / 3.0, 3.0);
        Assert.True(peerRms < 1, $"PEER output RMS {peerRms} on unit-RMS input");
    }

    static double Rms(Tensor t) => t.square().mean().sqrt().item<float>();
}
