using PeerSharp.Kernels;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace PeerSharp.Model;

/// <summary>Multi-head causal self-attention with optional rotary positions and a KV cache.</summary>
public sealed class CausalSelfAttention : nn.Module<Tensor, Tensor>
{
    // Field names are registered names, so that TorchSharp's field registration does not add them twice.
    [ComponentName(Name = "qkv")]
    readonly Linear _qkv;
    [ComponentName(Name = "proj")]
    readonly Linear _proj;
    readonly int _heads;
    readonly RotaryEmbedding? _rotary;

    /// <summary>An attention layer for the model's shape.</summary>
    public CausalSelfAttention(ModelConfig config, RotaryEmbedding? rotary, string name = "attn") : base(name)
    {
        _heads = config.AttentionHeads;
        _rotary = rotary;
        _qkv = nn.Linear(config.ModelDim, 3 * config.ModelDim);
        _proj = nn.Linear(config.ModelDim, config.ModelDim);
        register_module("qkv", _qkv);
        register_module("proj", _proj);
    }

    /// <summary>Attention without a cache (training, evaluation).</summary>
    public override Tensor forward(Tensor x) => forward(x, null, 0);

    /// <summary>Attention over the cached positions plus the new ones; x holds positions start.. of the sequence.</summary>
    public Tensor forward(Tensor x, KvCache? cache, int layer)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], T = x.shape[1], C = x.shape[2];
        var start = cache?.Length ?? 0;
        var qkv = _qkv.forward(x).view(B, T, 3, _heads, C / _heads);   // (B, T, 3, H, hd)
        var q = qkv.select(2, 0).transpose(1, 2);                       // (B, H, T, hd)
        var k = qkv.select(2, 1).transpose(1, 2);                       // (B, H, T, hd)
        var v = qkv.select(2, 2).transpose(1, 2);                       // (B, H, T, hd)
        if (_rotary is not null)
        {
            q = _rotary.Apply(q, start);
            k = _rotary.Apply(k, start);
        }
        if (cache is not null) (k, v) = cache.Append(layer, k, v);    // (B, H, start+T, hd)

        Tensor y;
        if (start == 0)
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        else
        {
            // New positions start.. attend to every cached position and to the new ones up to themselves.
            var queryPosition = arange(start, start + T).unsqueeze(1);          // (T, 1)
            var keyPosition = arange(0, start + T).unsqueeze(0);                // (1, start+T)
            y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: keyPosition.le(queryPosition));
        }
        var merged = y.transpose(1, 2).contiguous().view(B, T, C);             // (B, T, C)
        return scope.MoveToOuter(_proj.forward(merged));
    }

    /// <summary>
    /// One new position (B, 1, C) for each of B sequences, sequence b with its own cache caches[b] (batch size 1),
    /// at its own length; a sequence's result does not depend on the others (<see cref="DecodeAttention"/>, and
    /// the projections run inside the caller's <see cref="BatchInvariance"/> scope).
    /// </summary>
    public Tensor Decode(Tensor x, IReadOnlyList<KvCache> caches, int layer)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], C = x.shape[2];
        var qkv = BatchInvariance.Linear(_qkv, x).view(B, 3, _heads, 1, C / _heads);  // (B, 3, H, 1, hd)
        var q = qkv.select(1, 0);                                                      // (B, H, 1, hd)
        var k = qkv.select(1, 1);
        var v = qkv.select(1, 2);
        if (_rotary is not null)
        {
            var positions = tensor(caches.Select(c => (long)c.Length).ToArray());     // (B)
            q = _rotary.Apply(q, positions);
            k = _rotary.Apply(k, positions);
        }
        var buffers = caches.Select(c => c.Buffers(layer)).ToList();
        var y = DecodeAttention.Step(q.squeeze(2), k.squeeze(2), v.squeeze(2), [.. buffers.Select(b => b.Keys)], [.. buffers.Select(b => b.Values)],
                                     [.. caches.Select(c => c.Length)]);             // (B, H, hd)
        return scope.MoveToOuter(BatchInvariance.Linear(_proj, y.view(B, 1, C)));
    }
}
