namespace Overlay.Transport;

/// <summary>
/// A node's event loops: the first serves the TAP's first queue and every link socket; a source that wants a thread of
/// its own (another queue of a multi-queue TAP) gets one of the others, started when first asked for. Every source, on
/// whichever loop, is read the same way: readiness, drain, process with that loop's batch.
/// </summary>
internal sealed class EventLoopGroup : IDisposable
{
    private readonly string _name;
    private readonly Lock _gate = new();
    private readonly List<EventLoop> _loops;
    private bool _disposed;

    private EventLoopGroup(string name, EventLoop first)
    {
        _name = name;
        _loops = [first];
    }

    /// <summary>The loop of the link sockets and of each device's first queue.</summary>
    public EventLoop Primary => _loops[0];

    /// <summary>Loops started so far.</summary>
    public int Count
    {
        get { lock (_gate) return _loops.Count; }
    }

    /// <summary>Starts a group with its primary loop; throws <see cref="PlatformNotSupportedException"/> where <see cref="EventLoop.IsSupported"/> is false.</summary>
    public static EventLoopGroup Start(string name) => new(name, EventLoop.Start(name));

    /// <summary>Loop <paramref name="index"/> (0 is <see cref="Primary"/>), started now if it was not yet.</summary>
    public EventLoop Get(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            while (_loops.Count <= index) _loops.Add(EventLoop.Start($"{_name} {_loops.Count}"));
            return _loops[index];
        }
    }

    /// <summary>Stops every loop (their sources have left them: their owners unregister before closing).</summary>
    public void Dispose()
    {
        EventLoop[] loops;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            loops = [.. _loops];
        }
        foreach (var loop in loops) loop.Dispose();
    }
}
