using PeerSharp.Layers;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Layers;

/// <summary>
/// PEER written from the paper's five steps alone (DESIGN.md "The algorithm"), as plain loops over double arrays: the tests' oracle. It shares
/// no code with the library and takes no shortcut: step 2-3 scores all N = n² full keys [C_a ; C'_b] and sorts
/// them, instead of the product-key search the layer uses.
/// </summary>
sealed record PeerReference
{
    public required PeerOptions Options { get; init; }

    /// <summary>d_model.</summary>
    public required int ModelDim { get; init; }
    public required double[] Query { get; init; }      // [h·d_key, d_model]
    public double[]? NormWeight { get; init; }         // [h·d_key]; all four null when the layer has no query BN
    public double[]? NormBias { get; init; }
    public double[]? RunningMean { get; init; }
    public double[]? RunningVar { get; init; }
    public required double[] Keys { get; init; }       // [2, n, d_key/2]
    public required double[] Down { get; init; }       // [N, d_model]
    public required double[] Up { get; init; }         // [N, d_model]

    /// <summary>The result of one forward, with how close the input is to the points where PEER is not smooth.</summary>
    /// <param name="Output">[M, d_model].</param>
    /// <param name="Ids">[M, h, k], best first.</param>
    /// <param name="Gates">[M, h, k], the softmax gates of those experts.</param>
    /// <param name="SelectionMargin">Smallest gap between the k-th and (k+1)-th best full-key score of any token and head.</param>
    /// <param name="SmallestExpertLogit">Smallest |u_i · x| of any selected expert (ReLU's kink is at 0).</param>
    public sealed record Result(double[] Output, int[] Ids, double[] Gates, double SelectionMargin, double SmallestExpertLogit);

    /// <summary>A reference holding a copy of the layer's current parameters and buffers.</summary>
    public static PeerReference Of(Peer peer)
    {
        var state = peer.state_dict();
        double[]? Get(string name) => state.TryGetValue(name, out var t) ? Doubles(t) : null;
        return new()
        {
            Options = peer.Options,
            ModelDim = peer.ModelDim,
            Query = Get("query.weight")!,
            NormWeight = Get("query_norm.weight"),
            NormBias = Get("query_norm.bias"),
            RunningMean = Get("query_norm.running_mean"),
            RunningVar = Get("query_norm.running_var"),
            Keys = Get("keys")!,
            Down = Get("down.weight")!,
            Up = Get("up.weight")!,
        };
    }

    /// <summary>The elements of a tensor, row-major, as doubles.</summary>
    public static double[] Doubles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
    }

    /// <summary>
    /// PEER on x [M, d_model] (row-major). BatchNorm uses the batch's mean and biased variance when
    /// <paramref name="training"/>, else the running statistics.
    /// </summary>
    public Result Forward(double[] x, bool training)
    {
        var o = Options;
        int d = ModelDim, n = o.SubKeyCount, h = o.HeadCount, k = o.TopK, dk = o.KeyDim;
        int half = dk / 2, expertCount = n * n, featureCount = h * dk, tokens = x.Length / d;

        // 1. features = W_q x, then BatchNorm per feature (eps 1e-5).
        var features = new double[tokens * featureCount];
        for (int m = 0; m < tokens; m++)
            for (int f = 0; f < featureCount; f++)
            {
                double sum = 0;
                for (int c = 0; c < d; c++) sum += Query[f * d + c] * x[m * d + c];
                features[m * featureCount + f] = sum;
            }
        if (NormWeight is not null)
            for (int f = 0; f < featureCount; f++)
            {
                double mean, variance;
                if (training)
                {
                    mean = 0;
                    for (int m = 0; m < tokens; m++) mean += features[m * featureCount + f];
                    mean /= tokens;
                    variance = 0;
                    for (int m = 0; m < tokens; m++) variance += Square(features[m * featureCount + f] - mean);
                    variance /= tokens;
                }
                else
                {
                    mean = RunningMean![f];
                    variance = RunningVar![f];
                }
                for (int m = 0; m < tokens; m++)
                {
                    ref var value = ref features[m * featureCount + f];
                    value = (value - mean) / Math.Sqrt(variance + 1e-5) * NormWeight[f] + NormBias![f];
                }
            }

        var y = new double[tokens * d];
        var ids = new int[tokens * h * k];
        var gates = new double[tokens * h * k];
        double margin = double.PositiveInfinity, smallestLogit = double.PositiveInfinity;
        var scores = new double[expertCount];
        for (int m = 0; m < tokens; m++)
            for (int j = 0; j < h; j++)
            {
                int q = m * featureCount + j * dk;   // head j's query: features [j·d_key, (j+1)·d_key)
                // 2-3. The score of expert a·n + b is its full key [C_a ; C'_b] · q; take the k best.
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < n; b++)
                    {
                        double s = 0;
                        for (int i = 0; i < half; i++)
                            s += Keys[a * half + i] * features[q + i] + Keys[(n + b) * half + i] * features[q + half + i];
                        scores[a * n + b] = s;
                    }
                var order = Enumerable.Range(0, expertCount).OrderByDescending(i => scores[i]).ToArray();
                if (k < expertCount) margin = Math.Min(margin, scores[order[k - 1]] - scores[order[k]]);

                // 4. Softmax over the k selected scores.
                var weights = new double[k];
                for (int r = 0; r < k; r++) weights[r] = Math.Exp(scores[order[r]] - scores[order[0]]);
                var total = weights.Sum();

                // 5. Σ_selected g · σ(u · x) · v, added over heads.
                for (int r = 0; r < k; r++)
                {
                    int id = order[r];
                    ids[(m * h + j) * k + r] = id;
                    gates[(m * h + j) * k + r] = weights[r] / total;
                    double logit = 0;
                    for (int c = 0; c < d; c++) logit += Down[id * d + c] * x[m * d + c];
                    smallestLogit = Math.Min(smallestLogit, Math.Abs(logit));
                    var weight = gates[(m * h + j) * k + r] * Activate(logit);
                    for (int c = 0; c < d; c++) y[m * d + c] += weight * Up[id * d + c];
                }
            }
        return new Result(y, ids, gates, margin, smallestLogit);
    }

    double Activate(double z) => Options.Activation switch
    {
        ExpertActivation.Gelu => 0.5 * z * (1 + Erf(z / Math.Sqrt(2))),
        ExpertActivation.Relu => Math.Max(z, 0),
        _ => throw new ArgumentOutOfRangeException(nameof(z)),
    };

    static double Square(double v) => v * v;

    /// <summary>erf to about 1e-15 (.NET has none): Maclaurin series below 3, erfc's continued fraction above.</summary>
    public static double Erf(double z)
    {
        if (z < 0) return -Erf(-z);
        if (z < 3)
        {
            // erf z = 2/√π Σ (-1)^i z^(2i+1) / (i! (2i+1))
            double power = z, sum = z;
            for (int i = 1; i < 200; i++)
            {
                power *= -z * z / i;
                var term = power / (2 * i + 1);
                sum += term;
                if (Math.Abs(term) < 1e-17 * Math.Abs(sum)) break;
            }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        // erfc z = e^(-z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))) (Abramowitz & Stegun 7.1.14).
        double fraction = z;
        for (int i = 80; i >= 1; i--) fraction = z + i / 2.0 / fraction;
        return 1 - Math.Exp(-z * z) / Math.Sqrt(Math.PI) / fraction;
    }
}
