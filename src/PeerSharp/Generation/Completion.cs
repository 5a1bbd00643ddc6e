using System.Threading.Channels;

namespace PeerSharp.Generation;

/// <summary>
/// A submitted request as it runs: its text arrives piece by piece in <see cref="Pieces"/> (written by the
/// generator's thread, never waiting for the reader), and <see cref="Result"/> completes when it ends.
/// </summary>
public sealed class Completion
{
    readonly Channel<string> _pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    readonly TaskCompletionSource<CompletionResult> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal Completion(CompletionRequest request, CancellationToken cancellation)
    {
        Request = request;
        Cancellation = cancellation;
    }

    /// <summary>What was asked.</summary>
    public CompletionRequest Request { get; }

    /// <summary>The text, piece by piece, as it is generated; the channel closes when the completion ends.</summary>
    public ChannelReader<string> Pieces => _pieces.Reader;

    /// <summary>The whole completion, once it has ended.</summary>
    public Task<CompletionResult> Result => _result.Task;

    internal CancellationToken Cancellation { get; }

    internal void Write(string piece)
    {
        if (piece.Length > 0) _pieces.Writer.TryWrite(piece);
    }

    internal void End(CompletionResult result)
    {
        _pieces.Writer.TryComplete();
        _result.TrySetResult(result);
    }

    internal void Fail(Exception error)
    {
        _pieces.Writer.TryComplete(error);
        _result.TrySetException(error);
    }
}
