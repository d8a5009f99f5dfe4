namespace Overlay.Nat;

/// <summary>Work the <see cref="NatScheduler"/> runs when due.</summary>
internal interface IScheduled
{
    /// <summary>Runs on the scheduler's timer thread; must not throw or block.</summary>
    void OnDue(long now);
}

/// <summary>
/// One timer for all of a component's time-driven work (STUN retransmissions, ICE pacing, keepalives, consent,
/// TURN refreshes): a priority queue of due times re-arming a single <see cref="ITimer"/> from the injected
/// <see cref="TimeProvider"/>, so there is never a timer per transaction and tests control time. A node shares one
/// among all its links' ICE agents (<see cref="Ice.IceOptions.Scheduler"/>): what falls due at the same instant (consent
/// checks on their grid) runs in one wake-up of one thread, not one per agent.
/// </summary>
internal sealed class NatScheduler : IDisposable
{
    private readonly PriorityQueue<IScheduled, long> _queue = new();
    private readonly List<(IScheduled Work, long Due)> _due = [];
    private readonly Lock _gate = new();
    private readonly ITimer _timer;
    private long _armedFor = long.MaxValue;
    private long _firings;
    private bool _disposed;

    public NatScheduler(TimeProvider time)
    {
        Time = time;
        _timer = time.CreateTimer(static s => ((NatScheduler)s!).Fire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public TimeProvider Time { get; }

    /// <summary>Current timestamp in <see cref="TimeProvider.TimestampFrequency"/> units.</summary>
    public long Now => Time.GetTimestamp();

    /// <summary>How often the timer has fired (each a wake-up of a thread-pool thread).</summary>
    public long Firings => Interlocked.Read(ref _firings);

    public long After(TimeSpan delay) => Now + (long)(delay.TotalSeconds * Time.TimestampFrequency);

    /// <summary>Runs <paramref name="work"/> once at <paramref name="due"/> (a timestamp). Work cancels itself by ignoring a stale call.</summary>
    public void At(long due, IScheduled work)
    {
        lock (_gate)
        {
            if (_disposed) return;
            _queue.Enqueue(work, due);
            if (due < _armedFor) Arm(due);
        }
    }

    public void In(TimeSpan delay, IScheduled work) => At(After(delay), work);

    /// <summary>
    /// Takes <paramref name="work"/> out of the queue when it waits there (a transaction that completed): it would wake
    /// a thread only to be ignored. The timer stays armed; should it fire for nothing, it re-arms for what is next.
    /// </summary>
    public void Cancel(IScheduled work)
    {
        lock (_gate)
        {
            if (!_disposed) _queue.Remove(work, out _, out _, ReferenceEqualityComparer.Instance);
        }
    }

    /// <summary>How many entries wait (tests).</summary>
    internal int Count
    {
        get { lock (_gate) return _queue.Count; }
    }

    /// <summary>
    /// Arms the timer for <paramref name="due"/>, rounded up to whole milliseconds: system timers count milliseconds, and
    /// one that fires a fraction early would find nothing due and re-arm for a fraction again, a wake-up per millisecond.
    /// </summary>
    private void Arm(long due)
    {
        _armedFor = due;
        var ticks = Math.Max(0, due - Now);
        var milliseconds = Math.Ceiling(ticks * 1000.0 / Time.TimestampFrequency);
        _timer.Change(TimeSpan.FromMilliseconds(milliseconds), Timeout.InfiniteTimeSpan);
    }

    private void Fire()
    {
        Interlocked.Increment(ref _firings);
        long now;
        lock (_gate)
        {
            if (_disposed) return;
            now = Now;
            _armedFor = long.MaxValue;
            // What falls due within the timer's granularity runs now rather than after one more wake-up.
            var horizon = now + Time.TimestampFrequency / 1000;
            while (_queue.TryPeek(out var work, out var due) && due <= horizon)
            {
                _queue.Dequeue();
                _due.Add((work, Math.Max(due, now))); // work sees its own due time even when run a fraction early
            }
            if (_queue.TryPeek(out _, out var next)) Arm(next);
        }
        // Only the timer thread touches _due; ITimer callbacks for one timer may overlap, so copy under the lock.
        (IScheduled Work, long Due)[] batch;
        lock (_gate)
        {
            batch = [.. _due];
            _due.Clear();
        }
        foreach (var (work, due) in batch) work.OnDue(due);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _queue.Clear();
        }
        _timer.Dispose();
    }
}
