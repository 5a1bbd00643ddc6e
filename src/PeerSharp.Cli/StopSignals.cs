using System.Runtime.InteropServices;

namespace PeerSharp.Cli;

/// <summary>
/// Ctrl+C (SIGINT), SIGTERM (timeout, docker stop, batch schedulers) and SIGHUP (a closed terminal) all ask a
/// long command to stop after its current step, writing a checkpoint, instead of ending the process.
/// </summary>
static class StopSignals
{
    /// <summary>Cancels <paramref name="cancellation"/> on any of the three signals until disposed.</summary>
    public static IDisposable Cancel(CancellationTokenSource cancellation) =>
        new Registrations([.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP }
            .Select(signal => PosixSignalRegistration.Create(signal, context => { context.Cancel = true; cancellation.Cancel(); }))]);

    sealed class Registrations(IReadOnlyList<IDisposable> items) : IDisposable
    {
        public void Dispose()
        {
            foreach (var item in items) item.Dispose();
        }
    }
}
