using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Model;

/// <summary>Pre-norm transformer block: x + attn(ln(x)), then x + ffn(ln(x)).</summary>
public sealed class Block : nn.Module<Tensor, Tensor>
{
    // Field names are registered names, so that TorchSharp's field registration does not add them twice.
    [ComponentName(Name = "ln_attn")]
    readonly LayerNorm _attentionNorm;
    [ComponentName(Name = "attn")]
    readonly CausalSelfAttention _attention;
    [ComponentName(Name = "ln_ffn")]
    readonly LayerNorm _feedForwardNorm;

    /// <summary>A block with the given feed-forward (dense, MoE, PKM or PEER).</summary>
    public Block(ModelConfig config, nn.Module<Tensor, Tensor> feedForward, RotaryEmbedding? rotary, string name = "block") : base(name)
    {
        _attentionNorm = nn.LayerNorm(config.ModelDim);
        _attention = new CausalSelfAttention(config, rotary);
        _feedForwardNorm = nn.LayerNorm(config.ModelDim);
        FeedForward = feedForward;
        register_module("ln_attn", _attentionNorm);
        register_module("attn", _attention);
        register_module("ln_ffn", _feedForwardNorm);
        register_module("ffn", FeedForward);
    }

    /// <summary>The block's feed-forward layer.</summary>
    [field: ComponentName(Name = "ffn")]
    public nn.Module<Tensor, Tensor> FeedForward { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => forward(x, null, 0);

    /// <summary>The block with an optional KV cache.</summary>
    public Tensor forward(Tensor x, KvCache? cache, int layer) => Residuals(x, normed => _attention.forward(normed, cache, layer));

    /// <summary>One new position (B, 1, C) of B sequences, each with its own cache (<see cref="CausalSelfAttention.Decode"/>).</summary>
    public Tensor Decode(Tensor x, IReadOnlyList<KvCache> caches, int layer) => Residuals(x, normed => _attention.Decode(normed, caches, layer));

    Tensor Residuals(Tensor x, Func<Tensor, Tensor> attention)
    {
        using var scope = NewDisposeScope();
        var h = x + attention(_attentionNorm.forward(x));                          // (B, T, C)
        // call, not forward: it runs the layer's forward hooks, through which growth reads what a layer's queries see.
        var y = h + FeedForward.call(_feedForwardNorm.forward(h));                // (B, T, C)
        return scope.MoveToOuter(y);
    }
}
