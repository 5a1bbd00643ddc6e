namespace PeerSharp.Layers;

/// <summary>
/// While deferred (on this thread), PEER and PKM layers give their expert tables a placeholder instead of drawing
/// them: a model whose tables will be mapped from a checkpoint (DESIGN.md "Memory-mapped tables") or drawn slice by
/// slice as its first checkpoint is written (<c>FreshCheckpoint</c>) costs no memory for them.
/// </summary>
static class TableInit
{
    [ThreadStatic]
    static bool _deferred;

    /// <summary>Whether tables are left uninitialised now.</summary>
    public static bool Deferred => _deferred;

    /// <summary>
    /// A placeholder table [rows, width] that takes no memory (one zero row, repeated by a stride of 0), to replace the
    /// one-row table a deferred layer is built with; its data is never read, only its shape. Not uninitialised memory
    /// of that size: at N = 4096², d_model 256, that is 17 GB of address space per table, which the kernel may refuse.
    /// </summary>
    public static TorchSharp.Modules.Parameter Unwritten(long rows, long width, TorchSharp.torch.ScalarType dtype = TorchSharp.torch.ScalarType.Float32) =>
        new(TorchSharp.torch.zeros(1, width, dtype: dtype).expand(rows, width), requires_grad: false);

    /// <summary>Defers table initialisation until the returned scope is disposed.</summary>
    public static IDisposable Defer()
    {
        var previous = _deferred;
        _deferred = true;
        return new Scope(previous);
    }

    sealed class Scope(bool previous) : IDisposable
    {
        public void Dispose() => _deferred = previous;
    }
}
