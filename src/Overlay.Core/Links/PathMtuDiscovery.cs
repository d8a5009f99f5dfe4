namespace Overlay.Links;

/// <summary>Where a link's path MTU search is (RFC 8899 §5.2's phases).</summary>
internal enum PathMtuPhase
{
    /// <summary>Confirming that the base size (an outer packet of 1280 bytes, IPv6's minimum) gets through.</summary>
    Base,
    /// <summary>Probing larger sizes.</summary>
    Search,
    /// <summary>The largest size that got through is in use; it is confirmed now and then (black holes) and raised later.</summary>
    Complete,
    /// <summary>
    /// Not even the base size was answered: the peer predates probing or the path is worse than IPv6 allows. The base
    /// size stays in use and is tried again now and then.
    /// </summary>
    Error,
}

/// <summary>One probe to send: its number and the datagram size to pad it to.</summary>
internal readonly record struct PathMtuProbe(uint Id, int Size);

/// <summary>
/// Datagram packetization layer path MTU discovery (DPLPMTUD, RFC 8899) for one link, on sizes of the link's own
/// datagrams (the sealed packet the peer's socket receives; the caller adds IP and UDP headers). No ICMP is needed: a
/// size counts as passing only when the peer acknowledged a probe of that size, over the authenticated link.
/// <list type="number">
/// <item>Base: a probe of the base size must be answered first (up to <see cref="MaxProbes"/> tries); until then, and if it
/// never is, the base size is what the link may send.</item>
/// <item>Search: rounds of up to <see cref="Ladder"/> probes spread between the largest size confirmed and the smallest
/// that failed; acknowledgements raise the confirmed size at once, a round without any ends after the probe timeout, and
/// <see cref="MaxProbes"/> rounds in a row without one move the failed bound down to the round's smallest size. A few rounds of one round trip each
/// find the size to within <see cref="Granularity"/> bytes.</item>
/// <item>Complete: every confirm interval a probe of the size in use checks it still passes; <see cref="MaxProbes"/> lost
/// in a row mean a black hole (RFC 8899 §4.3: a smaller path after a route change), and the link falls back to the base size
/// and searches again. Every raise interval the search is tried upward again (RFC 8899 §5.1.1's PMTU_RAISE_TIMER).</item>
/// </list>
/// Thread-safe; driven by <see cref="Poll"/> (a timer) and <see cref="OnAck"/> (the link's receive path).
/// </summary>
internal sealed class PathMtuDiscovery
{
    /// <summary>Tries of a size before it counts as failed (RFC 8899 §5.1.2's MAX_PROBES).</summary>
    public const int MaxProbes = 3;

    /// <summary>Probes in one search round.</summary>
    public const int Ladder = 8;

    /// <summary>The search stops when the confirmed and the failed size are this close.</summary>
    public const int Granularity = 4;

    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly TimeSpan _confirmInterval, _raiseInterval;
    private readonly PathMtuProbe[] _round = new PathMtuProbe[Ladder];
    private int _roundCount;
    private int _baseSize, _maxSize;
    private int _confirmed, _failedAbove; // failedAbove: the smallest size that failed (exclusive upper bound)
    private int _misses;                  // rounds (or confirmations) in a row without an answer
    private bool _progress;               // an answer arrived in the current round
    private bool _inRound;                // probes are out and their round has not been ended by Poll
    private long _roundEnds, _nextConfirm, _nextRaise;
    private uint _nextId;
    private long _probesSent, _blackHoles;
    private volatile PathMtuPhase _phase;

    public PathMtuDiscovery(int baseSize, int maxSize, TimeSpan confirmInterval, TimeSpan raiseInterval, TimeProvider time)
    {
        _time = time;
        _confirmInterval = confirmInterval;
        _raiseInterval = raiseInterval;
        Reset(baseSize, maxSize);
    }

    /// <summary>The largest datagram the link may send now: confirmed by a probe, or the base size until one is.</summary>
    public int Confirmed => Volatile.Read(ref _confirmed);

    public PathMtuPhase Phase => _phase;

    /// <summary>True when the round in flight has been answered in full (or timed out): <see cref="Poll"/> has work now.</summary>
    public bool RoundOver
    {
        get
        {
            lock (_gate) return _inRound && _time.GetTimestamp() >= _roundEnds;
        }
    }

    /// <summary>True while probes are out and their round has not been ended by <see cref="Poll"/>.</summary>
    public bool InRound
    {
        get
        {
            lock (_gate) return _inRound;
        }
    }

    public long ProbesSent => Interlocked.Read(ref _probesSent);

    /// <summary>Times the size in use stopped getting through and the link fell back to the base size.</summary>
    public long BlackHoles => Interlocked.Read(ref _blackHoles);

    /// <summary>Starts over on a new path (sizes as its headers allow): the base size until the base probe is answered.</summary>
    public void Reset(int baseSize, int maxSize)
    {
        lock (_gate)
        {
            _baseSize = baseSize;
            _maxSize = Math.Max(baseSize, maxSize);
            StartBase();
        }
    }

    private void StartBase()
    {
        Volatile.Write(ref _confirmed, _baseSize);
        _failedAbove = _maxSize + 1;
        _misses = 0;
        _roundCount = 0;
        _inRound = false;
        _phase = PathMtuPhase.Base;
    }

    /// <summary>
    /// Called when the timer fires: ends the round that timed out, and writes the probes to send now into
    /// <paramref name="probes"/> (at most <see cref="Ladder"/>); returns how many, and in <paramref name="next"/> when to call again.
    /// </summary>
    public int Poll(TimeSpan probeTimeout, Span<PathMtuProbe> probes, out TimeSpan next)
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            if (_inRound && now < _roundEnds)
            {
                next = _time.GetElapsedTime(now, _roundEnds);
                return 0;
            }
            if (_inRound) EndRound(now);
            switch (_phase)
            {
                case PathMtuPhase.Base:
                    return StartRound(now, probeTimeout, probes, [_baseSize], out next);
                case PathMtuPhase.Search:
                    if (_failedAbove - _confirmed <= Granularity)
                    {
                        Complete(now);
                        goto case PathMtuPhase.Complete;
                    }
                    return StartRound(now, probeTimeout, probes, LadderSizes(stackalloc int[Ladder]), out next);
                case PathMtuPhase.Complete:
                    if (_misses > 0 || now >= _nextConfirm)
                        return StartRound(now, probeTimeout, probes, [_confirmed], out next); // confirmation (black hole detection)
                    if (now >= _nextRaise && _confirmed < _maxSize)
                    {
                        _failedAbove = _maxSize + 1;
                        _phase = PathMtuPhase.Search;
                        goto case PathMtuPhase.Search;
                    }
                    next = _time.GetElapsedTime(now, Math.Min(_nextConfirm, _confirmed < _maxSize ? _nextRaise : long.MaxValue));
                    return 0;
                default: // Error: try the base size again after a while
                    if (now < _nextConfirm)
                    {
                        next = _time.GetElapsedTime(now, _nextConfirm);
                        return 0;
                    }
                    StartBase();
                    goto case PathMtuPhase.Base;
            }
        }
    }

    /// <summary>
    /// The peer answered probe <paramref name="id"/>, saying a datagram of <paramref name="size"/> bytes arrived; true when
    /// that ends the round early (the timer should fire now).
    /// </summary>
    public bool OnAck(uint id, int size)
    {
        lock (_gate)
        {
            var index = -1;
            for (var i = 0; i < _roundCount; i++)
                if (_round[i].Id == id && _round[i].Size == size) index = i;
            if (index < 0 || !_inRound) return false; // late, from an earlier round, or made up: ignored
            _round[index] = _round[index] with { Size = 0 };
            _progress = true;
            if (size > _confirmed && size < _failedAbove) Volatile.Write(ref _confirmed, size);
            // Every size in the round answered or below what is confirmed now: nothing left to wait for.
            for (var i = 0; i < _roundCount; i++)
                if (_round[i].Size > _confirmed) return false;
            _roundEnds = _time.GetTimestamp();
            return true;
        }
    }

    private void EndRound(long now)
    {
        _inRound = false;
        var progress = _progress;
        _progress = false;
        // The smallest size that went unanswered bounds the search from above, once answers show the path is alive.
        var smallestLost = int.MaxValue;
        for (var i = 0; i < _roundCount; i++)
            if (_round[i].Size > _confirmed) smallestLost = Math.Min(smallestLost, _round[i].Size);
        _roundCount = 0;
        switch (_phase)
        {
            case PathMtuPhase.Base when progress:
                _misses = 0;
                _phase = PathMtuPhase.Search;
                break;
            case PathMtuPhase.Base when ++_misses >= MaxProbes:
                _phase = PathMtuPhase.Error;
                _nextConfirm = now + Ticks(_confirmInterval);
                break;
            case PathMtuPhase.Search when progress:
                _misses = 0;
                if (smallestLost != int.MaxValue) _failedAbove = Math.Min(_failedAbove, smallestLost);
                break;
            case PathMtuPhase.Search when ++_misses >= MaxProbes:
                // Even the smallest size of the round failed every time: the path lies below it; search beneath.
                _misses = 0;
                _failedAbove = Math.Min(_failedAbove, smallestLost);
                break;
            case PathMtuPhase.Complete when progress:
                _misses = 0;
                _nextConfirm = now + Ticks(_confirmInterval);
                break;
            case PathMtuPhase.Complete when ++_misses >= MaxProbes:
                Interlocked.Increment(ref _blackHoles);
                StartBase();
                break;
        }
    }

    private void Complete(long now)
    {
        _misses = 0;
        _phase = PathMtuPhase.Complete;
        _nextConfirm = now + Ticks(_confirmInterval);
        _nextRaise = now + Ticks(_raiseInterval);
    }

    /// <summary>Up to <see cref="Ladder"/> sizes spread evenly above the confirmed size, the largest just below the failed one.</summary>
    private ReadOnlySpan<int> LadderSizes(Span<int> sizes)
    {
        var low = _confirmed;
        var high = _failedAbove - 1;
        var count = 0;
        for (var k = 1; k <= Ladder; k++)
        {
            var size = low + (int)((long)(high - low) * k / Ladder);
            if (size > low && (count == 0 || size > sizes[count - 1])) sizes[count++] = size;
        }
        return sizes[..count];
    }

    private int StartRound(long now, TimeSpan probeTimeout, Span<PathMtuProbe> probes, ReadOnlySpan<int> sizes, out TimeSpan next)
    {
        var count = Math.Min(Math.Min(sizes.Length, probes.Length), Ladder);
        for (var i = 0; i < count; i++) probes[i] = _round[i] = new PathMtuProbe(unchecked(++_nextId), sizes[i]);
        _roundCount = count;
        _progress = false;
        _roundEnds = now + Ticks(probeTimeout);
        _inRound = true;
        Interlocked.Add(ref _probesSent, count);
        next = probeTimeout;
        return count;
    }

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);
}
