using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Overlay.Engine;

/// <summary>
/// Runs actions one at a time, in the order they were posted, on the thread pool. An overlay's topology and link
/// bookkeeping are touched only from here, so they need no locks and behave the same in tests and simulations.
/// An action that throws is logged and counted; it never stops the queue.
/// </summary>
internal sealed partial class SerialQueue : IAsyncDisposable
{
    private readonly Channel<Action> _work = Channel.CreateUnbounded<Action>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ILogger _logger;
    private readonly Task _runner;
    private long _faults;

    public SerialQueue(ILogger logger)
    {
        _logger = logger;
        _runner = Task.Run(RunAsync);
    }

    /// <summary>Actions that threw (each logged).</summary>
    public long Faults => Interlocked.Read(ref _faults);

    /// <summary>Queues <paramref name="action"/>; false once the queue is closed.</summary>
    public bool Post(Action action) => _work.Writer.TryWrite(action);

    /// <summary>Runs <paramref name="function"/> on the queue and returns its result.</summary>
    public Task<T> InvokeAsync<T>(Func<T> function)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!Post(() =>
            {
                try { result.TrySetResult(function()); }
                catch (Exception e) { result.TrySetException(e); }
            }))
            result.TrySetException(new ObjectDisposedException(nameof(SerialQueue)));
        return result.Task;
    }

    private async Task RunAsync()
    {
        await foreach (var action in _work.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref _faults);
                LogFault(e);
            }
        }
    }

    /// <summary>Stops taking work and waits for what was queued to finish.</summary>
    public async ValueTask DisposeAsync()
    {
        _work.Writer.TryComplete();
        await _runner.ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "overlay control action failed")]
    private partial void LogFault(Exception exception);
}
