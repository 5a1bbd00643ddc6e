using PeerSharp.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Product-key memory (Lample et al. 2019), the paper's PKM baseline: PEER's retrieval (the same
/// <see cref="ProductKeyRetrieval"/>), but each selected row is a plain value vector instead of a single-neuron
/// expert: f(x) = Σ_heads Σ_selected g_i · value_i.
/// State-dict names: query.weight [h·d_key, d_model], query_norm.*, keys [2, n, d_key/2], values.weight [N, d_model].
/// </summary>
public sealed class ProductKeyMemory : nn.Module<Tensor, Tensor>, IExpertRetrieval
{
    // Variance of a dense FFW's output at initialisation, for unit-variance input: its hidden units GELU(z),
    // z ~ N(0, 1/3) (fan-in d_model, U(±1/√d) weights), have E[GELU(z)²] ≈ 0.1174, and the output sums 4·d_model of
    // them with weights of variance 1/(3·4·d_model), so Var = 0.1174 / 3.
    const double DenseOutputVariance = 0.1174 / 3;

    readonly ProductKeyRetrieval _retrieval;   // query, query_norm, keys
    // Named as registered, so that TorchSharp's field registration does not add it a second time.
    [ComponentName(Name = "values")]
    readonly EmbeddingBag _values;             // [N, d_model], summed with per-row weights (the gates)

    /// <summary>Builds a layer of width <paramref name="modelDim"/> with freshly initialised parameters.</summary>
    public ProductKeyMemory(int modelDim, PkmOptions options, string name = "pkm") : base(name)
    {
        if (modelDim <= 0) throw new PeerSharpException($"PKM model dim {modelDim} must be positive");
        options.Validate();
        (ModelDim, Options) = (modelDim, options);
        _retrieval = new ProductKeyRetrieval(this, modelDim, options);

        // sparse: the value table's gradient holds only the rows read this step, for SparseAdamW.
        _values = nn.EmbeddingBag(TableInit.Deferred ? 1 : options.ValueCount, modelDim, mode: EmbeddingBagMode.Sum, sparse: true);
        if (TableInit.Deferred) _values.weight = TableInit.Unwritten(options.ValueCount, modelDim);
        register_module("values", _values);
        if (TableInit.Deferred) return;
        InitialiseRows("values.weight", Values);
        HugePages.Advise(Values, collapse: true);   // read at random rows (DESIGN.md "Where the time goes")
    }

    /// <inheritdoc />
    public void InitialiseRows(string table, Tensor rows)
    {
        if (table != "values.weight") throw new ArgumentException($"PKM has no table '{table}'; its table is values.weight");
        // Values: each head averages k of them with softmax gates (Σ g² ≈ 1/k when even) and h heads are summed, so
        // Var(value) = k/h · Var(dense FFW output) starts the layer at a dense FFW's output scale (as PEER's
        // initialisation does; Lample et al. use variance 1/d).
        using var noGrad = no_grad();
        rows.normal_(0, Math.Sqrt(DenseOutputVariance * Options.TopK / Options.HeadCount));
    }

    /// <summary>d_model, the width of the layer's input, output and memory values.</summary>
    public int ModelDim { get; }

    /// <summary>The layer's settings.</summary>
    public PkmOptions Options { get; }

    /// <inheritdoc />
    public long ExpertCount => Options.ValueCount;

    /// <inheritdoc />
    public ProductKeyRetrieval Retrieval => _retrieval;

    /// <summary>The memory values [N, d_model], state-dict name values.weight; a forward reads only h·k rows per token.</summary>
    public Parameter Values => _values.get_parameter("weight")!;

    /// <inheritdoc />
    public IReadOnlyList<(string Name, Parameter Table)> Tables => [("values.weight", Values)];

    /// <inheritdoc />
    public bool SparseTableGradients => Values.dtype == ScalarType.Float32 && Values.device_type == TorchSharp.DeviceType.CPU;

    /// <summary>PKM forward. input: [..., d_model]; returns the same shape.</summary>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.reshape(-1, ModelDim);                                         // [M, d_model]

        // One query per head, q = BN(W_q x), then product-key retrieval and softmax gates, exactly as PEER.
        var queries = _retrieval.Queries(x);                                         // [M, h, d_key]
        var (scores, ids) = _retrieval.Retrieve(queries);                            // [M, h, k] each
        RowReadAhead.Request(ids, Values);   // a table mapped from a file: its pages are read meanwhile
        var gates = scores.softmax(-1);                                              // [M, h, k]

        // Σ_heads Σ_selected g · value as one weighted bag of h·k rows per token: embedding_bag reads the rows
        // in place, never materialising [M, h, k, d_model], and back-propagates into the gates as well.
        long M = x.shape[0], hk = Options.HeadCount * Options.TopK;
        var y = _values.forward(ids.view(M, hk), null!, gates.view(M, hk));         // [M, d_model]

        _retrieval.Context.Observer?.Observe(ids, gates);
        return scope.MoveToOuter(y.view(input.shape));
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _retrieval.Dispose();
        base.Dispose(disposing);
    }
}
