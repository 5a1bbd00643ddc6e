using PeerSharp.Kernels;
using PeerSharp.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Kernels;

/// The fused kernel against its oracle, the tensor-op formulation: output and every gradient.
public class FusedExpertsTests
{
    const double Tolerance = 1e-4;

    /// One random problem: leaves x, gates, tables and fixed ids, plus the output weights r of the loss Σ y·r.
    sealed class Problem(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, Tensor r)
    {
        public Tensor X = x, Ids = ids, Gates = gates, Down = down, Up = up, R = r;

        public static Problem Random(long seed, int tokens, int heads, int topK, int dim, int experts)
        {
            var g = new Generator((ulong)seed);
            return new Problem(
                randn(tokens, dim, generator: g),
                randint(experts, [tokens, heads, topK], dtype: ScalarType.Int64, generator: g),
                rand(tokens, heads, topK, generator: g),
                randn(experts, dim, generator: g) * 0.3,
                randn(experts, dim, generator: g) * 0.3,
                randn(tokens, dim, generator: g));
        }
    }

    /// Output and gradients (x, gates, down, up; tables as dense tensors) of Σ y·r through one kernel.
    static Tensor[] Run(Problem p, bool fused, ExpertActivation activation, int? threads = null)
    {
        var x = p.X.clone().requires_grad_();
        var gates = p.Gates.clone().requires_grad_();
        var down = new Parameter(p.Down.clone());
        var up = new Parameter(p.Up.clone());
        var y = fused
            ? FusedExperts.Forward(x, p.Ids, gates, down, up, activation, threads)
            : PlainExperts.Forward(x, p.Ids, gates, down, up, activation);
        (y * p.R).sum().backward();
        if (fused)
        {
            Assert.True(down.grad!.is_sparse);
            Assert.True(up.grad!.is_sparse);
        }
        return [y.detach(), x.grad!, gates.grad!, Dense(down.grad!), Dense(up.grad!)];
    }

    static Tensor Dense(Tensor t) => t.is_sparse ? t.to_dense() : t;

    static bool Identical(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static void AssertClose(Tensor[] expected, Tensor[] actual)
    {
        string[] names = ["y", "dx", "dgates", "ddown", "dup"];
        for (int i = 0; i < expected.Length; i++)
        {
            var error = (actual[i] - expected[i]).norm().item<float>() / Math.Max(1e-12, expected[i].norm().item<float>());
            Assert.True(error < Tolerance, $"{names[i]}: relative error {error:E2}");
        }
    }

    [Theory]
    [InlineData(7, 3, 4, 16, 9, ExpertActivation.Gelu)]      // few experts: many repeats
    [InlineData(33, 2, 1, 24, 64, ExpertActivation.Relu)]    // k = 1
    [InlineData(16, 4, 3, 20, 4, ExpertActivation.Gelu)]     // d_model not a multiple of the vector width
    [InlineData(64, 8, 16, 64, 256, ExpertActivation.Gelu)]  // the paper's h and k
    [InlineData(5, 2, 2, 40, 1, ExpertActivation.Relu)]      // a single expert: every selection is the same row
    [InlineData(12, 2, 1, 3, 5, ExpertActivation.Gelu)]      // k = 1 and a tiny width (scalar path only)
    public void FusedMatchesTensorOps(int tokens, int heads, int topK, int dim, int experts, ExpertActivation activation)
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(tokens * 1000 + experts, tokens, heads, topK, dim, experts);
        AssertClose(Run(p, fused: false, activation), Run(p, fused: true, activation));
    }

    [Fact]
    public void OneExpertChosenBySeveralHeadsAndManyTokens()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(3, tokens: 20, heads: 4, topK: 3, dim: 32, experts: 1000);
        p.Ids[0, .., 0] = tensor(7L);          // every head of token 0 picks expert 7
        p.Ids[.., 1, 2] = tensor(7L);          // and so does head 1 of every token
        p.Ids[5, 2, ..] = tensor(11L);         // one head picks the same expert k times
        AssertClose(Run(p, fused: false, ExpertActivation.Gelu), Run(p, fused: true, ExpertActivation.Gelu));
    }

    [Fact]
    public void OneAndTwoThreadsGiveIdenticalResults()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(5, tokens: 150, heads: 4, topK: 4, dim: 48, experts: 64);
        var one = Run(p, fused: true, ExpertActivation.Gelu, threads: 1);
        var two = Run(p, fused: true, ExpertActivation.Gelu, threads: 2);
        var three = Run(p, fused: true, ExpertActivation.Gelu, threads: 3);
        for (int i = 0; i < one.Length; i++)
        {
            Assert.True(Identical(one[i], two[i]), $"output {i} differs between 1 and 2 threads");
            Assert.True(Identical(one[i], three[i]), $"output {i} differs between 1 and 3 threads");
        }
    }

    [Fact]
    public void TableGradientHoldsOnlyTouchedRowsOnce()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(9, tokens: 30, heads: 2, topK: 2, dim: 16, experts: 500);
        var down = new Parameter(p.Down.clone());
        var up = new Parameter(p.Up.clone());
        FusedExperts.Forward(p.X, p.Ids, p.Gates, down, up, ExpertActivation.Gelu).sum().backward();
        var touched = p.Ids.flatten().unique().Item1;
        Assert.True(Identical(down.grad!.SparseIndices.flatten(), touched));
        Assert.Equal([touched.shape[0], 16L], down.grad.SparseValues.shape);
        Assert.True(SparseRows.IsCoalesced(up.grad!));
    }

    [Fact]
    public void TablesUsedTwiceInOneGraphAndAcrossBackwardCalls()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(4, tokens: 10, heads: 2, topK: 3, dim: 16, experts: 12);
        var q = Problem.Random(8, tokens: 6, heads: 2, topK: 3, dim: 16, experts: 12);
        Tensor[] Grads(bool fused)
        {
            var down = new Parameter(p.Down.clone());
            var up = new Parameter(p.Up.clone());
            Tensor Experts(Problem s) => fused
                ? FusedExperts.Forward(s.X, s.Ids, s.Gates, down, up, ExpertActivation.Gelu)
                : PlainExperts.Forward(s.X, s.Ids, s.Gates, down, up, ExpertActivation.Gelu);
            // Two uses in one graph, then a second backward that accumulates into .grad.
            ((Experts(p) * p.R).sum() + (Experts(q) * q.R).sum()).backward();
            (Experts(q) * q.R).sum().backward();
            if (!fused) return [down.grad!, up.grad!];
            // Autograd's sums of sparse gradients may repeat rows; Coalesce merges them.
            var merged = new[] { SparseRows.Coalesce(down.grad!), SparseRows.Coalesce(up.grad!) };
            Assert.All(merged, m => Assert.True(SparseRows.IsCoalesced(m)));
            return [merged[0].to_dense(), merged[1].to_dense()];
        }
        var plain = Grads(fused: false);
        var fused = Grads(fused: true);
        for (int i = 0; i < 2; i++)
            Assert.True((fused[i] - plain[i]).norm().item<float>() < Tolerance * plain[i].norm().item<float>());
    }

    [Fact]
    public void TablesThatAreNotLeavesGetTheirGradientThroughTheGraph()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(12, tokens: 8, heads: 2, topK: 3, dim: 16, experts: 10);
        Tensor[] Grads(bool fused)
        {
            var down = new Parameter(p.Down.clone());
            var up = new Parameter(p.Up.clone());
            var (scaledDown, scaledUp) = (down * 2, up * 3);   // computed tables: not leaves
            var y = fused
                ? FusedExperts.Forward(p.X, p.Ids, p.Gates, scaledDown, scaledUp, ExpertActivation.Gelu)
                : PlainExperts.Forward(p.X, p.Ids, p.Gates, scaledDown, scaledUp, ExpertActivation.Gelu);
            (y * p.R).sum().backward();
            return [Dense(down.grad!), Dense(up.grad!)];
        }
        var plain = Grads(fused: false);
        var fused = Grads(fused: true);
        for (int i = 0; i < 2; i++)
            Assert.True((fused[i] - plain[i]).norm().item<float>() < Tolerance * plain[i].norm().item<float>());
    }

    [Fact]
    public void FrozenTablesAndInferenceWork()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(6, tokens: 9, heads: 2, topK: 2, dim: 16, experts: 30);
        var x = p.X.clone().requires_grad_();
        FusedExperts.Forward(x, p.Ids, p.Gates, p.Down, p.Up, ExpertActivation.Relu).sum().backward();
        var xPlain = p.X.clone().requires_grad_();
        PlainExperts.Forward(xPlain, p.Ids, p.Gates, p.Down, p.Up, ExpertActivation.Relu).sum().backward();
        Assert.True(x.grad!.allclose(xPlain.grad!, rtol: 1e-4, atol: 1e-5));

        using (no_grad())
        {
            var y = FusedExperts.Forward(p.X, p.Ids, p.Gates, p.Down, p.Up, ExpertActivation.Gelu);
            var expected = PlainExperts.Forward(p.X, p.Ids, p.Gates, p.Down, p.Up, ExpertActivation.Gelu);
            Assert.True(y.allclose(expected, rtol: 1e-4, atol: 1e-5));
        }
    }

    [Fact]
    public void IdsOutsideTheTableAreRejected()
    {
        using var scope = NewDisposeScope();
        var p = Problem.Random(2, tokens: 3, heads: 1, topK: 2, dim: 8, experts: 4);
        p.Ids[1, 0, 1] = tensor(4L);
        Assert.Throws<ArgumentException>(() => FusedExperts.Forward(p.X, p.Ids, p.Gates, p.Down, p.Up, ExpertActivation.Gelu));
    }

    [Fact]
    public void PeerLayerGivesTheSameOutputAndGradientsWithEitherKernel()
    {
        using var scope = NewDisposeScope();
        var options = new PeerOptions { SubKeyCount = 6, HeadCount = 3, TopK = 4, KeyDim = 8 };
        var plain = new Peer(32, options with { Kernel = KernelChoice.Plain });
        var fused = new Peer(32, options with { Kernel = KernelChoice.Fused });
        fused.load_state_dict(plain.state_dict());
        Assert.True(fused.UsesFusedKernel);
        var x = randn(2, 11, 32, generator: new Generator(17));
        var r = randn(2, 11, 32, generator: new Generator(18));
        (plain.forward(x) * r).sum().backward();
        (fused.forward(x) * r).sum().backward();
        var fusedParameters = fused.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in plain.named_parameters())
        {
            var expected = parameter.grad!;
            var actual = Dense(fusedParameters[name].grad!);
            var error = (actual - expected).norm().item<float>() / Math.Max(1e-12, expected.norm().item<float>());
            Assert.True(error < Tolerance, $"{name}: relative error {error:E2}");
        }
    }
}
