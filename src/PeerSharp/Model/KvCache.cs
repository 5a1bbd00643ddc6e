using static TorchSharp.torch;

namespace PeerSharp.Model;

/// <summary>
/// Keys and values of every attention layer for the positions generated so far, so that each new token
/// costs one position of attention, not the whole context again. Buffers are allocated once for the
/// model's context length.
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor[] _keys;     // per layer (B, H, ContextLength, head dim)
    readonly Tensor[] _values;

    /// <summary>An empty cache for a model and batch size.</summary>
    public KvCache(ModelConfig config, long batchSize)
    {
        var headDim = config.ModelDim / config.AttentionHeads;
        _keys = new Tensor[config.LayerCount];
        _values = new Tensor[config.LayerCount];
        for (int i = 0; i < config.LayerCount; i++)
        {
            _keys[i] = zeros(batchSize, config.AttentionHeads, config.ContextLength, headDim);
            _values[i] = zeros(batchSize, config.AttentionHeads, config.ContextLength, headDim);
        }
        Capacity = config.ContextLength;
    }

    /// <summary>Positions held.</summary>
    public int Length { get; private set; }

    /// <summary>Most positions it can hold (the model's context length).</summary>
    public int Capacity { get; }

    /// <summary>Stores a layer's new keys and values (B, H, T, hd) at the end; returns all keys and values so far.</summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        var count = (int)keys.shape[2];
        if (Length + count > Capacity)
            throw new InvalidOperationException($"KV cache holds {Capacity} positions; cannot add {count} after {Length}");
        _keys[layer].narrow(2, Length, count).copy_(keys);
        _values[layer].narrow(2, Length, count).copy_(values);
        return (_keys[layer].narrow(2, 0, Length + count), _values[layer].narrow(2, 0, Length + count));
    }

    /// <summary>A layer's whole key and value buffers (B, H, ContextLength, hd), for a kernel that appends in place.</summary>
    internal (Tensor Keys, Tensor Values) Buffers(int layer) => (_keys[layer], _values[layer]);

    /// <summary>Called once all layers have appended a step's positions.</summary>
    internal void Advance(int count) => Length += count;

    /// <summary>Forgets every position.</summary>
    public void Clear() => Length = 0;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _keys.Concat(_values)) t.Dispose();
    }
}
