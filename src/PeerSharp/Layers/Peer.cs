using PeerSharp.Distributed;
using PeerSharp.Kernels;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Parameter Efficient Expert Retrieval (He 2024): a feed-forward layer that sends each token to h·k of
/// N = n² single-neuron experts e_i(x) = σ(u_i · x) · v_i, found through a learned product-key index.
/// State-dict names and shapes are the public contract (DESIGN.md "Parameter contract"): query.weight,
/// query_norm.*, keys, down.weight, up.weight.
/// </summary>
public sealed class Peer : nn.Module<Tensor, Tensor>, IExpertRetrieval
{
    readonly ProductKeyRetrieval _retrieval;   // query, query_norm, keys
    // Field names are registered names: TorchSharp also registers module fields under their own names, which
    // would put every table into the state dict twice.
    [ComponentName(Name = "down")]
    readonly Embedding _down;                  // [N, d_model]: u_i
    [ComponentName(Name = "up")]
    readonly Embedding _up;                    // [N, d_model]: v_i

    /// <summary>Builds a layer of width <paramref name="modelDim"/> with freshly initialised parameters.</summary>
    public Peer(int modelDim, PeerOptions options, string name = "peer") : base(name)
    {
        if (modelDim <= 0) throw new PeerSharpException($"PEER model dim {modelDim} must be positive");
        options.Validate();
        (ModelDim, Options) = (modelDim, options);
        _retrieval = new ProductKeyRetrieval(this, modelDim, options);

        if (TableInit.Deferred)
        {
            // Mapped from a checkpoint, or drawn slice by slice as they are written, next (TableInit): left
            // unwritten, so they take no memory.
            _down = nn.Embedding(1, modelDim);
            _up = nn.Embedding(1, modelDim);
            _down.weight = TableInit.Unwritten(options.ExpertCount, modelDim, TableDType);
            _up.weight = TableInit.Unwritten(options.ExpertCount, modelDim, TableDType);
        }
        else
        {
            _down = Table(options.ExpertCount, modelDim);
            _up = Table(options.ExpertCount, modelDim);
            InitialiseRows("down.weight", _down.weight!);
            InitialiseRows("up.weight", _up.weight!);
            HugePages.Advise(_down.weight!, collapse: true);   // read at random rows (DESIGN.md "Where the time goes")
            HugePages.Advise(_up.weight!, collapse: true);
        }
        register_module("down", _down);
        register_module("up", _up);
    }

    /// <summary>An expert table [N, d_model] of <see cref="TableDType"/>, to be drawn by <see cref="InitialiseRows"/>.</summary>
    Embedding Table(long rows, int width)
    {
        if (TableDType == ScalarType.Float32) return nn.Embedding(rows, width);
        // TorchSharp builds an embedding of another dtype as a float32 one, drawn, then converted: a transient float32
        // table, resident at its peak. A placeholder, then the bfloat16 table itself, never has it.
        var table = nn.Embedding(1, width);
        table.weight = new Parameter(empty(rows, width, dtype: TableDType));
        return table;
    }

    /// <summary>The dtype of the expert tables (<see cref="ExpertTableStorage"/>).</summary>
    ScalarType TableDType => Options.TableStorage == ExpertTableStorage.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>d_model, the width of the layer's input and output.</summary>
    public int ModelDim { get; }

    /// <summary>The layer's settings.</summary>
    public PeerOptions Options { get; }

    /// <inheritdoc />
    public long ExpertCount => Options.ExpertCount;

    /// <inheritdoc />
    public ProductKeyRetrieval Retrieval => _retrieval;

    /// <summary>The expert tables [N, d_model]: u_i (down) and v_i (up).</summary>
    public Parameter Down => _down.weight!;

    /// <inheritdoc cref="Down"/>
    public Parameter Up => _up.weight!;

    /// <inheritdoc />
    public IReadOnlyList<(string Name, Parameter Table)> Tables => [("down.weight", Down), ("up.weight", Up)];

    /// <inheritdoc />
    public void InitialiseRows(string table, Tensor rows)
    {
        // Initialisation (ours; DESIGN.md "Initialisation": N(0, 1) tables make the output explode). u_i is drawn
        // like the first layer of a dense FFW, U(±1/√d_model), so u_i · x has the spread of a dense hidden unit.
        // Each head's output averages k experts with softmax gates (Σ g² ≈ 1/k when the gates are even), and h
        // heads are summed, so v_i of variance k / (3h) gives the output the variance of a dense FFW with hidden
        // width 4·d_model and the same U(±1/√fan_in) initialisation:
        // Σ_4d Var(W2) · E[σ²] = 4d · 1/(3·4d) · E[σ²] = E[σ²]/3 = h · (1/k) · Var(v) · E[σ²].
        // Drawn in float32 whatever the storage; bfloat16 tables are drawn a slice at a time and rounded to nearest,
        // so no float32 copy of a whole table is ever made.
        using var noGrad = no_grad();
        if (rows.dtype == ScalarType.Float32)
        {
            Draw(table, rows);
            return;
        }
        const long sliceRows = 65536;
        for (long start = 0; start < rows.shape[0]; start += sliceRows)
        {
            using var slice = rows.narrow(0, start, Math.Min(sliceRows, rows.shape[0] - start));
            using var drawn = empty(slice.shape, dtype: ScalarType.Float32);
            Draw(table, drawn);
            slice.copy_(drawn);
        }
    }

    void Draw(string table, Tensor rows) => _ = table switch
    {
        "down.weight" => rows.uniform_(-1.0 / Math.Sqrt(ModelDim), 1.0 / Math.Sqrt(ModelDim)),
        "up.weight" => rows.normal_(0, Math.Sqrt(Options.TopK / (3.0 * Options.HeadCount))),
        _ => throw new ArgumentException($"PEER has no table '{table}'; its tables are down.weight and up.weight"),
    };

    /// <summary>
    /// Whether retrieval and step 5 run the fused C# kernels (<see cref="ProductKeyOptions.Kernel"/>, float32 on
    /// the CPU); the expert-table gradients are then row-sparse.
    /// </summary>
    public bool UsesFusedKernel => _retrieval.CanRunFused;

    /// <inheritdoc />
    public bool SparseTableGradients => UsesFusedKernel;

    /// <summary>
    /// Step 5 as the layer runs it now: what the context attaches (expert parallelism's shards, the tables' update in
    /// the backward), else the fused kernel where it can run and the plain tensor ops otherwise.
    /// </summary>
    ExpertStep Experts => _retrieval.Context.Experts ?? (UsesFusedKernel ? ExpertStep.Fused : ExpertStep.Plain);

    /// <summary>PEER forward, steps 1-5 of the paper. input: [..., d_model]; returns the same shape.</summary>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.reshape(-1, ModelDim);                                        // [M, d_model]

        // 1. One query per head: q = BN(W_q x).
        var queries = _retrieval.Queries(x);                                         // [M, h, d_key]

        // 2-3. Product-key retrieval: per half top-k, then top-k of the k² candidates; id = a·n + b.
        var (scores, ids) = _retrieval.Retrieve(queries);                            // [M, h, k] each
        RowReadAhead.Request(ids, Down, Up);   // tables mapped from a file: their pages are read meanwhile

        // 4. Gates: softmax over the k selected scores of each head.
        var gates = scores.softmax(-1);                                              // [M, h, k]

        // 5. Experts: Σ_heads Σ_selected g · σ(u_id · x) · v_id.
        var y = Experts.Forward(x, ids, gates, Down, Up, Options.Activation);       // [M, d_model]

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
