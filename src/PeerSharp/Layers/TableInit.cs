namespace PeerSharp.Layers;

/// <summary>
/// While deferred (on this thread), PEER and PKM layers give their expert tables uninitialised memory instead of
/// drawing them: a model whose tables will be mapped from a checkpoint (DESIGN.md "Memory-mapped tables") then
/// never touches their pages, so building it costs no resident memory for them.
/// </summary>
static class TableInit
{
    [ThreadStatic]
    static bool _deferred;

    /// <summary>Whether tables are left uninitialised now.</summary>
    public static bool Deferred => _deferred;

    /// <summary>A table [rows, width] of uninitialised memory, to replace the one-row table a deferred layer is built with.</summary>
    public static TorchSharp.Modules.Parameter Unwritten(long rows, long width) => new(TorchSharp.torch.empty(rows, width));

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
