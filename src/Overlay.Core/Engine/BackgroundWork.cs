using Microsoft.Extensions.Logging;

namespace Overlay.Engine;

/// <summary>
/// The tasks an overlay starts beside its control queue (negotiations, restarts, signals sent without waiting): each
/// is held until it ends, a fault nobody expected is logged, and <see cref="WhenIdleAsync"/> lets the overlay's
/// disposal wait for them, so none outlives the overlay unseen.
/// </summary>
internal sealed partial class BackgroundWork(ILogger logger)
{
    private readonly Lock _gate = new();
    private readonly HashSet<Task> _running = [];
    private long _faults;

    /// <summary>Tasks running now.</summary>
    public int Count
    {
        get { lock (_gate) return _running.Count; }
    }

    /// <summary>Tasks that ended with an exception (each logged).</summary>
    public long Faults => Interlocked.Read(ref _faults);

    /// <summary>Holds <paramref name="task"/> until it ends.</summary>
    public void Track(Task task)
    {
        if (task.IsCompleted)
        {
            Observe(task);
            return;
        }
        lock (_gate) _running.Add(task);
        task.ContinueWith(static (done, state) => ((BackgroundWork)state!).Finished(done), this,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Completes once every task tracked so far, and every task they started meanwhile, has ended, or at <paramref name="timeout"/>.</summary>
    /// <returns>True when all ended; false at the timeout (the rest are left running, and logged).</returns>
    public async Task<bool> WhenIdleAsync(TimeSpan timeout, TimeProvider time)
    {
        var deadline = time.GetTimestamp() + (long)(timeout.TotalSeconds * time.TimestampFrequency);
        while (true)
        {
            Task[] running;
            lock (_gate) running = [.. _running];
            if (running.Length == 0) return true;
            var left = TimeSpan.FromSeconds((double)(deadline - time.GetTimestamp()) / time.TimestampFrequency);
            if (left <= TimeSpan.Zero)
            {
                LogStillRunning(running.Length);
                return false;
            }
            // Faults were logged as they happened; a timeout comes round to the check above.
            await Task.WhenAll(running).WaitAsync(left, time).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private void Finished(Task task)
    {
        lock (_gate) _running.Remove(task);
        Observe(task);
    }

    private void Observe(Task task)
    {
        if (!task.IsFaulted) return;
        Interlocked.Increment(ref _faults);
        LogFault(task.Exception!.GetBaseException());
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "background work of the overlay failed")]
    private partial void LogFault(Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} background tasks still running at shutdown; leaving them")]
    private partial void LogStillRunning(int count);
}
