using PeerSharp.Evaluation;
using PeerSharp.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Parameter Efficient Expert Retrieval (He 2024): a feed-forward layer that sends each token to h·k of
/// N = n² single-neuron experts e_i(x) = σ(u_i · x) · v_i, found through a learned product-key index.
/// State-dict names and shapes are the public contract of PEER.md: query.weight, query_norm.*, keys,
/// down.weight, up.weight.
/// </summary>
public sealed class Peer : nn.Module<Tensor, Tensor>, IExpertRetrieval
{
    readonly ProductKeyQueries _queries;   // query, query_norm
    // Named for module.to(...): TorchSharp re-creates a converted or moved parameter and re-assigns only the field
    // whose (component) name is the registered one; without it this field would keep the disposed original.
    [ComponentName(Name = "keys")]
    readonly Parameter _subKeys;        // [2, n, d_key/2]: C and C'
    readonly Embedding _down;           // [N, d_model]: u_i
    readonly Embedding _up;             // [N, d_model]: v_i

    /// <summary>Builds a layer with freshly initialised parameters.</summary>
    public Peer(PeerOptions options, string name = "peer") : base(name)
    {
        options.Validate();
        Options = options;
        int d = options.ModelDim, n = options.SubKeyCount, h = options.HeadCount, dk = options.KeyDim;

        _queries = new ProductKeyQueries(this, d, h, dk, options.QueryBatchNorm);

        // Initialisation (ours; PEER.md warns that N(0, 1) tables make the output explode). Sub-key scores have
        // unit variance (ProductKeyQueries.NewSubKeys). u_i is drawn like the first layer of a dense FFW,
        // U(±1/√d_model), so u_i · x has the same spread as a dense hidden unit. Each head's output averages k experts with softmax gates (Σ g² ≈ 1/k
        // when the gates are even), and h heads are summed, so v_i of variance k / (3h) gives the output the
        // variance of a dense FFW with hidden width 4·d_model and the same U(±1/√fan_in) initialisation:
        // Σ_4d Var(W2) · E[σ²] = 4d · 1/(3·4d) · E[σ²] = E[σ²]/3 = h · (1/k) · Var(v) · E[σ²].
        _subKeys = ProductKeyQueries.NewSubKeys(n, dk);
        register_parameter("keys", _subKeys);
        _down = nn.Embedding(options.ExpertCount, d);
        _up = nn.Embedding(options.ExpertCount, d);
        using (no_grad())
        {
            _down.weight!.uniform_(-1.0 / Math.Sqrt(d), 1.0 / Math.Sqrt(d));
            _up.weight!.normal_(0, Math.Sqrt(options.TopK / (3.0 * h)));
        }
        register_module("down", _down);
        register_module("up", _up);
    }

    /// <summary>The layer's settings.</summary>
    public PeerOptions Options { get; }

    /// <inheritdoc />
    public ExpertUsage? Usage { get; set; }

    /// <inheritdoc />
    public long ExpertCount => Options.ExpertCount;

    /// <summary>The expert tables [N, d_model]: u_i (down) and v_i (up).</summary>
    public Parameter Down => _down.weight!;

    /// <inheritdoc cref="Down"/>
    public Parameter Up => _up.weight!;

    /// <summary>The sub-key sets [2, n, d_key/2].</summary>
    public Parameter SubKeys => _subKeys;

    /// <summary>
    /// Whether retrieval and step 5 run the fused C# kernels: chosen by <see cref="PeerOptions.Kernel"/>, and
    /// only where the parameters are float32 on the CPU (what the kernels are written for); elsewhere, float64
    /// gradient checks included, the plain tensor ops run. The expert-table gradients are then sparse.
    /// </summary>
    public bool UsesFusedKernel => Options.Kernel == ExpertKernel.Fused && Down.device_type == DeviceType.CPU && Down.dtype == ScalarType.Float32;

    /// <inheritdoc />
    public IReadOnlyList<(string Name, Parameter Table)> Tables => [("down.weight", Down), ("up.weight", Up)];

    /// <inheritdoc />
    public bool SparseTableGradients => UsesFusedKernel;

    /// <summary>PEER forward, PEER.md steps 1-5. input: [..., d_model]; returns the same shape.</summary>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var o = Options;
        var x = input.reshape(-1, o.ModelDim);                                       // [M, d_model]

        // 1. One query per head: q = BN(W_q x), features [j·d_key, (j+1)·d_key) for head j.
        var queries = _queries.Compute(x);                                           // [M, h, d_key]

        // 2-3. Product-key retrieval: per half top-k, then top-k of the k² candidates.
        var (scores, ids) = UsesFusedKernel
            ? FusedProductKeys.Retrieve(queries, _subKeys, o.TopK)                  // [M, h, k] each
            : ProductKeys.Retrieve(queries, _subKeys, o.TopK);                       // [M, h, k] each

        // 4. Gates: softmax over the k selected scores of each head.
        var gates = scores.softmax(-1);                                              // [M, h, k]

        // 5. Experts: Σ_heads Σ_selected g · σ(u_id · x) · v_id (fused C# kernel on the CPU, else tensor ops).
        var y = UsesFusedKernel
            ? FusedExperts.Forward(x, ids, gates, Down, Up, o.Activation)          // [M, d_model]
            : PlainExperts.Forward(x, ids, gates, Down, Up, o.Activation);         // [M, d_model]

        Usage?.Add(ids, gates);
        return scope.MoveToOuter(y.view(input.shape));
    }
}
