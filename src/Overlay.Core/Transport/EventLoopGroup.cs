namespace Overlay.Transport;

/// <summary>
/// A node's event loops, one per core it may use (<see cref="DataPathOptions.EventLoops"/>). Loop i reads queue i of
/// each multi-queue TAP and writes into it; each link's socket is served by one loop, the one with the fewest
/// links when the link is made (<see cref="LeastLoaded"/>), so the links of a node that talks to several peers
/// spread over the cores. A frame from a link goes into the TAP through its loop's queue, which makes Linux steer the
/// host's packets of that flow back to the same queue (tun's flow table), so a frame's answer crosses no thread. Every
/// source, on whichever loop, is read the same way: readiness, drain, process with that loop's batch.
/// </summary>
internal sealed class EventLoopGroup : IDisposable
{
    private readonly string _name;
    private readonly Lock _gate = new();
    private readonly List<EventLoop> _loops;
    private bool _disposed;

    private EventLoopGroup(string name, List<EventLoop> loops)
    {
        _name = name;
        _loops = loops;
    }

    /// <summary>The first loop (queue 0).</summary>
    public EventLoop Primary => _loops[0];

    /// <summary>Loops started so far.</summary>
    public int Count
    {
        get { lock (_gate) return _loops.Count; }
    }

    /// <summary>
    /// Starts a group of <paramref name="count"/> loops (at least one); throws <see cref="PlatformNotSupportedException"/>
    /// where <see cref="EventLoop.IsSupported"/> is false.
    /// </summary>
    public static EventLoopGroup Start(string name, int count = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var loops = new List<EventLoop>(count);
        try
        {
            for (var i = 0; i < count; i++) loops.Add(EventLoop.Start(i == 0 ? name : $"{name} {i}", i));
        }
        catch
        {
            foreach (var loop in loops) loop.Dispose();
            throw;
        }
        return new EventLoopGroup(name, loops);
    }

    /// <summary>Loop <paramref name="index"/> (0 is <see cref="Primary"/>), started now if it was not yet (a TAP with more queues than loops).</summary>
    public EventLoop Get(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            while (_loops.Count <= index) _loops.Add(EventLoop.Start($"{_name} {_loops.Count}", _loops.Count));
            return _loops[index];
        }
    }

    /// <summary>The loop carrying the fewest links (<see cref="EventLoop.Links"/>; the first of those on a tie), for a new link's socket.</summary>
    public EventLoop LeastLoaded() => Least(static loop => loop.Links);

    /// <summary>The loop with the fewest links up (<see cref="EventLoop.LinksUp"/>; the first of those on a tie).</summary>
    public EventLoop FewestUp() => Least(static loop => loop.LinksUp);

    private EventLoop Least(Func<EventLoop, int> count)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var best = _loops[0];
            for (var i = 1; i < _loops.Count; i++)
                if (count(_loops[i]) < count(best)) best = _loops[i];
            return best;
        }
    }

    /// <summary>Every loop started so far.</summary>
    public IReadOnlyList<EventLoop> Loops
    {
        get { lock (_gate) return [.. _loops]; }
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
