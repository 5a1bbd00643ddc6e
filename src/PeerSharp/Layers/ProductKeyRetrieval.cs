using PeerSharp.Distributed;
using PeerSharp.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Steps 1-3 of PEER (DESIGN.md "The algorithm"), shared by PEER and PKM: the h query networks stacked in one
/// linear map [h·d_key, d_model], BatchNorm over the h·d_key query features (Lample et al. 2019), and the exact
/// top-k of the N = n² product keys [C_a ; C'_b] per query and head.
/// <para>
/// Its tensors are registered on the owning layer under the contract's flat names "query", "query_norm" and
/// "keys" (DESIGN.md "Parameter contract"), not under a sub-module of their own, so PEER's and PKM's state
/// dicts read as in PyTorch code. The plain tensor-op retrieval and the fused kernel are chosen here, from
/// <see cref="CanRunFused"/>; what callers above attach for a while (an observer, the ranks, frozen query
/// statistics, PEER's step 5) is one <see cref="RetrievalContext"/>, changed only through <see cref="Attach"/>.
/// </para>
/// </summary>
public sealed class ProductKeyRetrieval : IDisposable
{
    readonly nn.Module _owner;
    readonly Linear _query;             // [h·d_key, d_model]
    readonly BatchNorm1d? _queryNorm;   // over the h·d_key query features
    readonly ProductKeyOptions _options;

    const double NormEpsilon = 1e-5, NormMomentum = 0.1;   // PyTorch's BatchNorm1d defaults

    /// <summary>Creates the query networks, BatchNorm and sub-keys, registered on <paramref name="owner"/>.</summary>
    public ProductKeyRetrieval(nn.Module owner, int modelDim, ProductKeyOptions options)
    {
        (_owner, _options) = (owner, options);
        int h = options.HeadCount, dk = options.KeyDim;
        _query = nn.Linear(modelDim, h * dk, hasBias: false);
        owner.register_module("query", _query);
        if (options.QueryBatchNorm)
        {
            _queryNorm = nn.BatchNorm1d(h * dk, eps: NormEpsilon, momentum: NormMomentum);
            owner.register_module("query_norm", _queryNorm);
        }
        // Queries leave the BatchNorm with unit variance per feature, so sub-keys of variance 2/d_key give
        // sub-key scores of unit variance.
        owner.register_parameter("keys", new Parameter(randn(2, options.SubKeyCount, dk / 2) * Math.Sqrt(2.0 / dk)));
        // Cosine scores of random unit vectors in d_key/2 dimensions have variance 2/d_key: a temperature of √(d_key/2)
        // starts them at the unit variance of the dot-product scores above.
        if (options.CosineKeys) owner.register_parameter("score_scale", new Parameter(tensor((float)Math.Sqrt(dk / 2.0))));
        if (options.RevivalInterval > 0)
        {
            owner.register_buffer("revival_counts", zeros(2, options.SubKeyCount, dtype: ScalarType.Int64));   // selections per sub-key since the last revival
            owner.register_buffer("revival_step", zeros(1, dtype: ScalarType.Int64));                          // training forwards so far
            // [2, S·h, d_key/2]: half-queries of S tokens of the last training forward, the revival's candidates; a
            // buffer, so that a run resumed from a checkpoint revives from the same queries as an uninterrupted one.
            owner.register_buffer("revival_queries", zeros(2, RevivalSample * h, dk / 2));
        }
    }

    Tensor? _balanceLoss;   // owned here, outside any dispose scope, until the next forward

    /// <summary>
    /// The weighted <see cref="ProductKeyOptions.Balance"/> term of the last retrieval in training mode, in its autograd
    /// graph (the layer's <see cref="IAuxiliaryLoss.AuxiliaryLoss"/>); null in evaluation mode or without a balance term.
    /// </summary>
    public Tensor? BalanceLoss => _balanceLoss;

    /// <summary>
    /// The sub-key sets C = keys[0], C' = keys[1], [2, n, d_key/2]. Read from the owner on every use: module.to(...)
    /// replaces a converted parameter in the owner's registry, so a reference kept here would go stale.
    /// </summary>
    public Parameter SubKeys => _owner.get_parameter("keys")!;

    /// <summary>What is attached to the layer now (<see cref="Attach"/>); <see cref="RetrievalContext.None"/> as built.</summary>
    public RetrievalContext Context { get; private set; } = RetrievalContext.None;

    /// <summary>
    /// Attaches <paramref name="change"/>(the current context) until the returned scope is disposed, which puts back
    /// the settings this call changed (and only those, so scopes that end out of order keep each other's).
    /// </summary>
    public IDisposable Attach(Func<RetrievalContext, RetrievalContext> change)
    {
        var before = Context;
        var attached = change(before);
        Context = attached;
        return new Scope(this, before, attached);
    }

    sealed class Scope(ProductKeyRetrieval retrieval, RetrievalContext before, RetrievalContext attached) : IDisposable
    {
        bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            retrieval.Context = attached.Undo(retrieval.Context, before);
        }
    }

    /// <summary>k, the experts each head selects.</summary>
    public int TopK => _options.TopK;

    /// <summary>The query network weight W_q [h·d_key, d_model].</summary>
    public Parameter QueryWeight => _query.weight!;

    /// <summary>Whether the fused kernel can run: asked for, and float32 parameters on the CPU (what the kernels are written for).</summary>
    public bool CanRunFused
    {
        get
        {
            var keys = SubKeys;
            return _options.Kernel == KernelChoice.Fused && keys.device_type == DeviceType.CPU && keys.dtype == ScalarType.Float32;
        }
    }

    /// <summary>Step 1: one query per head, q = BN(W_q x); head j reads features [j·d_key, (j+1)·d_key). x: [M, d_model] → [M, h, d_key].</summary>
    public Tensor Queries(Tensor x)
    {
        using var scope = NewDisposeScope();
        var features = BatchInvariance.Linear(_query, x);                                          // [M, h·d_key]
        if (_queryNorm is not null)
            features = Context.QueryStatisticsFrozen
                ? nn.functional.batch_norm(features, _queryNorm.running_mean!, _queryNorm.running_var!, _queryNorm.weight, _queryNorm.bias, training: false, eps: 1e-5)
                : _queryNorm.training && Context.Replicas is { Size: > 1 } replicas ? SharedBatchNorm(_queryNorm, features, replicas) : _queryNorm.forward(features);
        var queries = features.view(-1, _options.HeadCount, _options.KeyDim);        // [M, h, d_key]
        if (_options.CosineKeys)
        {
            var halves = queries.chunk(2, dim: -1);                                  // 2 × [M, h, d_key/2]
            queries = cat([Unit(halves[0]), Unit(halves[1])], dim: -1) * _owner.get_parameter("score_scale")!;
        }
        return scope.MoveToOuter(queries);
    }

    /// <summary>Each vector of the last dimension scaled to unit length (a zero vector stays zero).</summary>
    static Tensor Unit(Tensor vectors) => nn.functional.normalize(vectors, p: 2, dim: -1, eps: 1e-6);

    /// <summary>The sub-keys the scores are taken against: <see cref="SubKeys"/>, unit-length ones for cosine retrieval. [2, n, d_key/2].</summary>
    Tensor ScoringKeys => _options.CosineKeys ? Unit(SubKeys) : SubKeys;

    /// <summary>
    /// BatchNorm in training mode with the mean and (biased) variance of the features of all ranks, in two passes
    /// like PyTorch's, differentiable through <see cref="ReplicaSum"/>; the running statistics move as one
    /// BatchNorm1d over the global batch would move them. features: [M, F] → [M, F].
    /// </summary>
    static Tensor SharedBatchNorm(BatchNorm1d norm, Tensor features, ICommunicator replicas)
    {
        using var scope = NewDisposeScope();
        long count = replicas.AllGather(features.shape[0]).Sum();                           // tokens of the global batch
        var mean = ReplicaSum.Apply(features.sum(0L), replicas) / count;                      // [F]
        var centered = features - mean;                                                     // [M, F]
        var variance = ReplicaSum.Apply(centered.square().sum(0L), replicas) / count;         // [F]
        var normalised = centered * (variance + NormEpsilon).rsqrt() * norm.weight! + norm.bias!;
        using (no_grad())
        {
            norm.running_mean!.mul_(1 - NormMomentum).add_(mean.detach(), alpha: NormMomentum);
            norm.running_var!.mul_(1 - NormMomentum).add_(variance.detach() * ((double)count / Math.Max(1, count - 1)), alpha: NormMomentum);
            norm.num_batches_tracked!.add_(1);
        }
        return scope.MoveToOuter(normalised);
    }

    /// <summary>
    /// Steps 2-3: per half top-k, then the top-k of the k² candidates. queries: [M, h, d_key] → scores and row ids
    /// a·n + b (with <see cref="ProductKeyOptions.HeadRotation"/>, rotated per head), [M, h, k] each, best first
    /// (scores differentiable in the queries and sub-keys), by the fused kernel where it <see cref="CanRunFused"/>.
    /// In training mode it also sets <see cref="BalanceLoss"/>.
    /// </summary>
    public (Tensor Scores, Tensor Ids) Retrieve(Tensor queries)
    {
        using var scope = NewDisposeScope();
        bool reviving = _owner.training && _options.RevivalInterval > 0;
        if (reviving) Revive();
        var keys = ScoringKeys;                                                      // [2, n, d_key/2]
        var (scores, pairs) = CanRunFused
            ? FusedProductKeys.Retrieve(queries, keys, _options.TopK)
            : ProductKeys.Retrieve(queries, keys, _options.TopK);                    // [M, h, k] each
        if (reviving) Remember(queries, pairs, keys.shape[1]);
        ReplaceBalanceLoss(_owner.training && _options.Balance != RetrievalBalance.None
            ? _options.BalanceWeight * RetrievalBalanceLoss.Of(_options.Balance, queries, keys, pairs, Context.Replicas)
            : null);
        var ids = _options.HeadRotation ? RotateHeads(pairs, keys.shape[1]) : pairs;
        return (scope.MoveToOuter(scores), scope.MoveToOuter(ids));
    }

    /// <summary>
    /// <see cref="ProductKeyOptions.HeadRotation"/>: head j's pair (a, b) names row ((a + jΔ) mod n)·n + (b + jΔ) mod n,
    /// Δ = ⌊n/h⌋ (at least 1). A bijection per head, so every head still reaches all N rows. pairs: [M, h, k] → same.
    /// </summary>
    Tensor RotateHeads(Tensor pairs, long n)
    {
        using var scope = NewDisposeScope();
        var shift = arange(_options.HeadCount, dtype: ScalarType.Int64).mul(Math.Max(1, n / _options.HeadCount)).view(1, -1, 1);   // [1, h, 1]
        var a = pairs.div(n, rounding_mode: RoundingMode.floor).add(shift).remainder(n);
        var b = pairs.remainder(n).add(shift).remainder(n);
        return scope.MoveToOuter(a * n + b);
    }

    /// <summary>
    /// <see cref="ProductKeyOptions.RevivalInterval"/>, before a training forward: every interval, each sub-key with no
    /// selection since the last revival takes the place of a distinct recent half-query (drawn with a generator seeded
    /// by the step, so a resumed run revives as an uninterrupted one), scaled to the mean length of the living sub-keys
    /// of its half; then the counts restart. A dead sub-key had no gradient, so its optimizer moments are near zero.
    /// </summary>
    void Revive()
    {
        if (Context.Replicas is { Size: > 1 })
            throw new PeerSharpException("dead-key revival is not supported in data-parallel training yet: each rank would revive from its own queries; set revivalInterval to 0");
        using var noGrad = no_grad();
        var counts = _owner.get_buffer("revival_counts")!;
        var step = _owner.get_buffer("revival_step")!;
        long done = step.item<long>();
        step.add_(1);
        if (done == 0 || done % _options.RevivalInterval != 0) return;
        var recent = _owner.get_buffer("revival_queries")!;
        var keys = SubKeys;                                                          // [2, n, d_key/2]
        var generator = new Generator((ulong)done);
        for (int s = 0; s < 2; s++)
        {
            var dead = counts[s].eq(0).nonzero().squeeze(1);                          // [D]
            long living = keys.shape[1] - dead.shape[0];
            if (dead.shape[0] == 0 || living == 0) continue;
            var candidates = recent[s];                                              // [S·h, d_key/2]
            var chosen = randperm(candidates.shape[0], generator: generator).narrow(0, 0, Math.Min(dead.shape[0], candidates.shape[0]));
            var length = keys[s].norm(1).sum().sub(keys[s].index_select(0, dead).norm(1).sum()).div(living);   // mean living length
            var fresh = Unit(candidates.index_select(0, chosen)) * length;            // [D', d_key/2]
            keys[s].index_copy_(0, dead.narrow(0, 0, chosen.shape[0]), fresh);
        }
        counts.zero_();
    }

    /// <summary>Adds a training forward's selections to the revival counts and keeps the half-queries of S evenly spaced tokens as the next candidates.</summary>
    void Remember(Tensor queries, Tensor pairs, long n)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var counts = _owner.get_buffer("revival_counts")!;
        var flat = pairs.flatten();
        var ones = ones_like(flat);
        counts[0].index_add_(0, flat.div(n, rounding_mode: RoundingMode.floor), ones, 1);
        counts[1].index_add_(0, flat.remainder(n), ones, 1);
        if (queries.shape[0] == 0) return;
        var tokens = arange(RevivalSample, dtype: ScalarType.Int64).mul(queries.shape[0]).div(RevivalSample, rounding_mode: RoundingMode.floor);   // S evenly spaced
        var halves = queries.detach().index_select(0, tokens).chunk(2, dim: -1);     // 2 × [S, h, d_key/2]
        var recent = _owner.get_buffer("revival_queries")!;
        for (int s = 0; s < 2; s++) recent[s].copy_(halves[s].reshape(-1, halves[s].shape[^1]));
    }

    const int RevivalSample = 256;   // tokens of a forward kept as revival candidates (× h heads)

    void ReplaceBalanceLoss(Tensor? loss)
    {
        _balanceLoss?.Dispose();
        _balanceLoss = loss?.DetachFromDisposeScope();
    }

    /// <summary>Frees the last <see cref="BalanceLoss"/>; the owning layer calls it when it is disposed.</summary>
    public void Dispose() => ReplaceBalanceLoss(null);
}
