using PeerSharp.Kernels;
using PeerSharp.Layers;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Model;

/// <summary>
/// Decoder-only transformer language model (GPT-2 shape, pre-norm) whose chosen blocks use a sparse
/// feed-forward (PEER, or the paper's baselines PKM and MoE); by default only the middle block, as in all of the
/// paper's runs.
/// </summary>
public sealed class TransformerLM : nn.Module<Tensor, Tensor>
{
    // Field names are registered names, so that TorchSharp's field registration does not add them twice.
    [ComponentName(Name = "tok_emb")]
    readonly Embedding _tokenEmbedding;
    [ComponentName(Name = "pos_emb")]
    readonly Embedding? _positionEmbedding;
    readonly RotaryEmbedding? _rotary;
    [ComponentName(Name = "blocks")]
    readonly ModuleList<Block> _blocks;
    [ComponentName(Name = "ln_f")]
    readonly LayerNorm _finalNorm;
    [ComponentName(Name = "head")]
    readonly Linear? _head;

    /// <summary>Builds a freshly initialised model.</summary>
    public TransformerLM(ModelConfig config, string name = "transformer") : base(name)
    {
        config.Validate();
        Config = config;
        _tokenEmbedding = nn.Embedding(config.VocabSize, config.ModelDim);
        register_module("tok_emb", _tokenEmbedding);
        if (config.Positions == PositionKind.Learned)
        {
            _positionEmbedding = nn.Embedding(config.ContextLength, config.ModelDim);
            register_module("pos_emb", _positionEmbedding);
        }
        else
            _rotary = new RotaryEmbedding(config.ContextLength, config.ModelDim / config.AttentionHeads);

        var kinds = config.FeedForwardKinds();
        _blocks = new ModuleList<Block>(kinds.Select(kind => new Block(config, FeedForwardFor(kind, config), _rotary)).ToArray());
        register_module("blocks", _blocks);
        _finalNorm = nn.LayerNorm(config.ModelDim);
        register_module("ln_f", _finalNorm);
        if (!config.TieEmbeddings)
        {
            _head = nn.Linear(config.ModelDim, config.VocabSize, hasBias: false);
            register_module("head", _head);
        }
        using (no_grad())
        {
            // GPT-2's small-normal embeddings keep the first residual stream near unit scale after LayerNorm.
            _tokenEmbedding.weight!.normal_(0, 0.02);
            _positionEmbedding?.weight!.normal_(0, 0.02);
        }
    }

    static nn.Module<Tensor, Tensor> FeedForwardFor(FeedForwardKind kind, ModelConfig config) => kind switch
    {
        FeedForwardKind.Peer => new Peer(config.ModelDim, config.PeerOptions),
        FeedForwardKind.Pkm => new ProductKeyMemory(config.ModelDim, config.PkmOptions),
        FeedForwardKind.Moe when config.MoeOptions.Routing == MoeRouting.TokenChoice => new TokenChoiceMoe(config.ModelDim, config.HiddenDim, config.MoeOptions),
        FeedForwardKind.Moe => new ExpertChoiceMoe(config.ModelDim, config.HiddenDim, config.MoeOptions),
        FeedForwardKind.Dense => new DenseFeedForward(config.ModelDim, config.HiddenDim),
        _ => throw new PeerSharpException($"feed-forward kind {kind} is not known"),
    };

    /// <summary>The model's shape.</summary>
    public ModelConfig Config { get; }

    /// <summary>The blocks, in order.</summary>
    public IReadOnlyList<Block> Blocks => [.. _blocks];

    /// <summary>Every PEER layer of the model.</summary>
    public IEnumerable<Peer> PeerLayers => _blocks.Select(b => b.FeedForward).OfType<Peer>();

    /// <summary>Logits (B, T, vocab) for token ids (B, T).</summary>
    public override Tensor forward(Tensor tokens) => forward(tokens, null);

    /// <summary>
    /// Logits for the new tokens (B, T) given the positions already in <paramref name="cache"/>; the cache
    /// then holds these positions too.
    /// </summary>
    public Tensor forward(Tensor tokens, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var T = tokens.shape[1];
        var start = cache?.Length ?? 0;
        if (start + T > Config.ContextLength)
            throw new PeerSharpException($"sequence of {start + T} tokens is longer than the model's context length {Config.ContextLength}");
        var x = _tokenEmbedding.forward(tokens);                                       // (B, T, C)
        if (_positionEmbedding is not null)
            x = x + _positionEmbedding.forward(arange(start, start + T, dtype: ScalarType.Int64));
        for (int i = 0; i < _blocks.Count; i++) x = _blocks[i].forward(x, cache, i);   // (B, T, C)
        cache?.Advance((int)T);
        return scope.MoveToOuter(Logits(x));
    }

    /// <summary>
    /// One decoding step of B sequences at once (continuous batching): logits (B, V) for one new token of each,
    /// tokens (B), sequence b extending its own cache caches[b] (batch size 1) at its own length, which then holds
    /// the new position too. Every matrix product runs batch-invariant (<see cref="BatchInvariance"/>), so a
    /// sequence's logits are bit-identical whatever else is in the step (with the fused PEER and PKM kernels;
    /// an expert-choice MoE routes among the step's tokens and is not).
    /// </summary>
    public Tensor Decode(Tensor tokens, IReadOnlyList<KvCache> caches)
    {
        using var scope = NewDisposeScope();
        using var invariant = BatchInvariance.Enter();
        if (tokens.dim() != 1 || tokens.shape[0] != caches.Count)
            throw new ArgumentException($"decode: tokens [{string.Join(", ", tokens.shape)}] must hold one token for each of the {caches.Count} caches");
        if (caches.FirstOrDefault(c => c.Length >= Config.ContextLength) is { } full)
            throw new PeerSharpException($"a sequence of {full.Length + 1} tokens is longer than the model's context length {Config.ContextLength}");
        var x = _tokenEmbedding.forward(tokens.unsqueeze(1));                          // (B, 1, C)
        if (_positionEmbedding is not null)
            x = x + _positionEmbedding.forward(tensor(caches.Select(c => (long)c.Length).ToArray())).unsqueeze(1);
        for (int i = 0; i < _blocks.Count; i++) x = _blocks[i].Decode(x, caches, i);   // (B, 1, C)
        foreach (var cache in caches) cache.Advance(1);
        return scope.MoveToOuter(Logits(x).squeeze(1));                                 // (B, V)
    }

    Tensor Logits(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = _finalNorm.forward(x);
        var logits = _head is null ? BatchInvariance.TimesTransposed(x, _tokenEmbedding.weight!) : BatchInvariance.Linear(_head, x);   // (B, T, V)
        return scope.MoveToOuter(logits);
    }

    /// <summary>
    /// The training objective: mean cross-entropy (nats per token) of the logits for tokens against targets (B, T),
    /// plus, in training mode, the auxiliary losses of the sparse layers (token-choice load balancing).
    /// </summary>
    public Tensor Loss(Tensor tokens, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var logits = forward(tokens);
        var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1));
        if (training)
            foreach (var auxiliary in _blocks.Select(b => b.FeedForward).OfType<IAuxiliaryLoss>())
                if (auxiliary.AuxiliaryLoss is { } term) loss = loss + term;
        return scope.MoveToOuter(loss);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _rotary?.Dispose();
        base.Dispose(disposing);
    }
}
