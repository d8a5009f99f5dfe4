using System.Threading.Tasks.Sources;

namespace Overlay.Stack.Internal;

/// <summary>
/// One awaiter at a time on a condition guarded by the owner's lock, with no allocation per wait: the owner checks the
/// condition under its lock, and when it does not hold calls <see cref="Arm"/> (still under the lock) and awaits what
/// it returns after leaving the lock; whoever changes the condition calls <see cref="Set"/> under the same lock.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _armed;
    private CancellationTokenRegistration _cancellation;
    private readonly object _lock;

    public AsyncSignal(object ownerLock) => _lock = ownerLock;

    /// <summary>Under the owner's lock: the next <see cref="Set"/> (or the token) completes the returned task.</summary>
    public ValueTask Arm(CancellationToken cancellationToken)
    {
        if (_armed) throw new InvalidOperationException("another operation is already waiting");
        _core.Reset();
        _armed = true;
        if (cancellationToken.CanBeCanceled)
            _cancellation = cancellationToken.UnsafeRegister(static (state, token) =>
            {
                var signal = (AsyncSignal)state!;
                lock (signal._lock) signal.Fail(new OperationCanceledException(token));
            }, this);
        return new ValueTask(this, _core.Version);
    }

    /// <summary>Under the owner's lock: wakes the waiter, if any.</summary>
    public void Set()
    {
        if (!_armed) return;
        _armed = false;
        _cancellation.Dispose();
        _cancellation = default;
        _core.SetResult(true);
    }

    /// <summary>Under the owner's lock: fails the waiter, if any.</summary>
    public void Fail(Exception error)
    {
        if (!_armed) return;
        _armed = false;
        _cancellation = default; // disposing the registration from inside its own callback would wait for itself
        _core.SetException(error);
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
