namespace Overlay.Topology;

/// <summary>
/// The Symphony topology policy of one node in one overlay (Manku et al., "Symphony: distributed hashing
/// in a small world"): a ring of <see cref="TopologyOptions.MinSuccessors"/> successor links plus
/// ⌊log2 N⌋ long-distance links drawn from the harmonic distribution over ring distance, plus static and
/// on-demand links. Pure logic: it reacts to membership, link and traffic events and tells an
/// <see cref="ILinkController"/> what to connect or disconnect. Time comes from an injected
/// <see cref="TimeProvider"/> and randomness from an injected <see cref="Random"/>, so thousands of
/// nodes run deterministically in one simulation. Not thread-safe: drive it from one thread.
/// </summary>
internal sealed class SymphonyTopology
{
    private readonly UInt128 _self;
    private readonly PeerRing _peers;
    private readonly TopologyOptions _options;
    private readonly ILinkController _controller;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly Dictionary<UInt128, Link> _links = [];
    private readonly Dictionary<UInt128, Backoff> _backoff = [];
    private readonly Dictionary<UInt128, long> _traffic = [];
    private DateTimeOffset _lastTick;
    private UInt128? _farthestSuccessor;
    private int _wantedLongDistance = -1;

    /// <summary>Creates the policy; nothing happens until <see cref="Rebalance"/> or an event.</summary>
    public SymphonyTopology(UInt128 self, PeerRing peers, TopologyOptions options, ILinkController controller, TimeProvider time, Random random)
    {
        _self = self;
        _peers = peers ?? throw new ArgumentNullException(nameof(peers));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _controller = controller ?? throw new ArgumentNullException(nameof(controller));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _random = random ?? throw new ArgumentNullException(nameof(random));
        _lastTick = time.GetUtcNow();
    }

    /// <summary>This node's ID.</summary>
    public UInt128 Self => _self;

    /// <summary>Links changes made so far (connects plus disconnects asked for), for churn figures.</summary>
    public long Changes { get; private set; }

    /// <summary>The peers this node has a link to or is setting one up with, and why.</summary>
    public IEnumerable<(UInt128 Peer, LinkRoles Roles, bool Up, bool Incoming)> Links
    {
        get
        {
            foreach (var (peer, link) in _links) yield return (peer, link.Roles, link.Up, link.Incoming);
        }
    }

    /// <summary>True when a link to <paramref name="peer"/> is up or being set up.</summary>
    public bool HasLink(UInt128 peer) => _links.ContainsKey(peer);

    /// <summary>True when a link to <paramref name="peer"/> is up.</summary>
    public bool IsLinked(UInt128 peer) => _links.TryGetValue(peer, out var l) && l.Up;

    /// <summary>Incoming-only links accepted at most (<see cref="TopologyOptions.MaxIncomingEdges"/>, or 2k for the current ring size).</summary>
    public int IncomingBound => _options.MaxIncomingEdges ?? Math.Max(16, 2 * WantedLongDistance);

    /// <summary>Number of long-distance links wanted for the current ring size.</summary>
    public int WantedLongDistance => _options.MaxLongDistEdges ?? (_peers.Count > 1 ? (int)Math.Floor(Math.Log2(_peers.Count)) : 0);

    /// <summary>A member appeared (the caller has added it to the ring).</summary>
    public void OnPeerJoined(UInt128 peer)
    {
        if (peer == _self) return;
        // Only a newcomer among our successors, a static edge, or a new ⌊log2 N⌋ changes our choice.
        if (_farthestSuccessor is not { } far || Ring.StrictlyBetween(_self, peer, far) || CountSuccessorRoles() < _options.MinSuccessors
            || _options.StaticEdges.Contains(peer) || WantedLongDistance != _wantedLongDistance)
            Rebalance();
    }

    /// <summary>A member left (presence lost; the caller has removed it from the ring).</summary>
    public void OnPeerLeft(UInt128 peer)
    {
        _backoff.Remove(peer);
        _traffic.Remove(peer);
        var linked = _links.Remove(peer);
        if (linked) Changes++;
        if (linked || (_farthestSuccessor is { } far && (peer == far || Ring.StrictlyBetween(_self, peer, far))) || WantedLongDistance != _wantedLongDistance)
        {
            if (linked) _controller.Disconnect(peer);
            Rebalance();
        }
    }

    /// <summary>The link to <paramref name="peer"/> came up.</summary>
    public void OnLinkUp(UInt128 peer)
    {
        if (_links.TryGetValue(peer, out var link)) link.Up = true;
        else _links[peer] = new Link { Up = true, Incoming = true }; // set up by the peer without asking us first
        _backoff.Remove(peer);
        DropUnwanted(); // the link it made way for may be up now
    }

    /// <summary>The link to <paramref name="peer"/> went down or could not be set up.</summary>
    public void OnLinkDown(UInt128 peer, bool failed)
    {
        if (!_links.Remove(peer, out var link)) return;
        if (failed || !link.Up)
        {
            var attempts = _backoff.TryGetValue(peer, out var b) ? b.Attempts + 1 : 1;
            var delay = TimeSpan.FromTicks(Math.Min(_options.MaxRetryDelay.Ticks, _options.InitialRetryDelay.Ticks << Math.Min(attempts - 1, 20)));
            // ±25% jitter so that nodes that failed together do not retry together.
            delay = TimeSpan.FromTicks((long)(delay.Ticks * (0.75 + 0.5 * _random.NextDouble())));
            _backoff[peer] = new Backoff(attempts, _time.GetUtcNow() + delay);
        }
        Rebalance();
    }

    /// <summary>
    /// A peer asks for a link. Successor requests are always accepted (the ring depends on them); others
    /// only while the links kept purely for other nodes stay under <see cref="IncomingBound"/>.
    /// When both sides asked at once the request of the higher node ID wins.
    /// </summary>
    public LinkDecision OnLinkRequested(UInt128 peer, LinkRoles requestedRoles)
    {
        if (peer == _self) return LinkDecision.Reject("a node does not link to itself");
        if (!_peers.Contains(peer)) return LinkDecision.Reject("not a known member of the overlay");
        if (_links.TryGetValue(peer, out var existing))
        {
            if (existing.Up) return LinkDecision.Accept;
            if (!existing.Incoming && _self > peer) return LinkDecision.Reject("collision: the higher node ID's request wins");
            existing.Incoming = true; // ours loses the collision: the link manager abandons its own attempt
            return LinkDecision.Accept;
        }
        // A successor request skips the bound (every node must reach its successors), but the requester's word is not
        // taken for it: only a peer that this node succeeds on the ring, within eight times the successor count, may ask
        // as one. Views of the ring differ a little while members come and go, and a requester skips the successors it
        // cannot reach (behind NATs no link between them crosses): its nearest reachable ones may lie several places on.
        var successor = (requestedRoles & LinkRoles.Successor) != 0 && Succeeds(peer, SuccessorWindow * Math.Max(1, _options.MinSuccessors));
        if (!successor && CountIncomingOnly() >= IncomingBound)
            return LinkDecision.Reject($"incoming degree bound {IncomingBound} reached");
        _links[peer] = new Link { Incoming = true };
        return LinkDecision.Accept;
    }

    /// <summary>How far on, in successor counts, a peer may ask this node for a successor link past the incoming bound.</summary>
    internal const int SuccessorWindow = 8;

    /// <summary>True when this node is among the <paramref name="within"/> members clockwise after <paramref name="peer"/>.</summary>
    private bool Succeeds(UInt128 peer, int within)
    {
        for (var k = 0; k < within; k++)
        {
            var next = _peers.After(peer, k);
            if (next is null) return false;
            if (next == _self) return true;
        }
        return false;
    }

    /// <summary>Bytes exchanged with <paramref name="peer"/> (from the switch's per-destination counters).</summary>
    public void OnTraffic(UInt128 peer, long bytes)
    {
        if (peer == _self || bytes <= 0) return;
        _traffic[peer] = (_traffic.TryGetValue(peer, out var b) ? b : 0) + bytes;
    }

    /// <summary>Periodic work: retries whose backoff expired, on-demand links from the traffic of the last period.</summary>
    public void Tick()
    {
        var now = _time.GetUtcNow();
        var seconds = Math.Max((now - _lastTick).TotalSeconds, 1e-3);
        _lastTick = now;
        var changed = false;
        foreach (var (peer, backoff) in _backoff)
            if (backoff.NotBefore <= now) changed = true;

        // On-demand: busiest peers above the threshold, up to the limit; idle ones lose the role.
        foreach (var (peer, link) in _links)
        {
            if ((link.Roles & LinkRoles.OnDemand) == 0) continue;
            var rate = (_traffic.TryGetValue(peer, out var b) ? b : 0) / seconds;
            if (rate >= _options.OnDemandThresholdBytesPerSecond / 4.0) link.IdleSince = null;
            else if (link.IdleSince is null) link.IdleSince = now;
            else if (now - link.IdleSince >= _options.OnDemandIdleTimeout) { link.Roles &= ~LinkRoles.OnDemand; changed = true; }
        }
        var onDemand = _links.Count(l => (l.Value.Roles & LinkRoles.OnDemand) != 0);
        if (onDemand < _options.MaxOnDemandEdges)
        {
            foreach (var (peer, bytes) in _traffic.OrderByDescending(t => t.Value))
            {
                if (onDemand >= _options.MaxOnDemandEdges || bytes / seconds < _options.OnDemandThresholdBytesPerSecond) break;
                if (!_peers.Contains(peer) || InBackoff(peer, now)) continue;
                if (_links.TryGetValue(peer, out var link))
                {
                    if ((link.Roles & LinkRoles.OnDemand) != 0) continue;
                    link.Roles |= LinkRoles.OnDemand;
                    link.IdleSince = null;
                }
                else
                {
                    _links[peer] = new Link { Roles = LinkRoles.OnDemand };
                    Changes++;
                    _controller.Connect(peer, LinkRoles.OnDemand);
                }
                onDemand++;
            }
        }
        _traffic.Clear();
        if (changed) Rebalance();
    }

    /// <summary>Recomputes which links this node wants and asks for the difference.</summary>
    public void Rebalance()
    {
        var now = _time.GetUtcNow();
        foreach (var (peer, backoff) in _backoff.ToArray())
            if (backoff.NotBefore <= now && !_peers.Contains(peer)) _backoff.Remove(peer);

        var wanted = new Dictionary<UInt128, LinkRoles>();
        void Want(UInt128 peer, LinkRoles role) => wanted[peer] = (wanted.TryGetValue(peer, out var r) ? r : 0) | role;

        // Successors: the nearest members clockwise, skipping those we cannot reach right now.
        _farthestSuccessor = null;
        var found = 0;
        for (var k = 0; found < _options.MinSuccessors; k++)
        {
            if (_peers.After(_self, k) is not { } peer) break;
            _farthestSuccessor = peer;
            if (InBackoff(peer, now)) continue;
            Want(peer, LinkRoles.Successor);
            found++;
        }

        foreach (var peer in _options.StaticEdges)
            if (peer != _self && _peers.Contains(peer) && !InBackoff(peer, now)) Want(peer, LinkRoles.Static);

        foreach (var (peer, link) in _links)
            if ((link.Roles & LinkRoles.OnDemand) != 0) Want(peer, LinkRoles.OnDemand);

        // Long-distance: keep the current ones while they are valid, draw new ones up to ⌊log2 N⌋.
        _wantedLongDistance = WantedLongDistance;
        var longDistance = 0;
        foreach (var (peer, link) in _links)
        {
            if ((link.Roles & LinkRoles.LongDistance) == 0 || longDistance >= _wantedLongDistance) continue;
            Want(peer, LinkRoles.LongDistance);
            longDistance++;
        }
        for (var attempt = 0; longDistance < _wantedLongDistance && attempt < 4 * _wantedLongDistance; attempt++)
        {
            if (DrawLongDistance() is not { } peer || wanted.ContainsKey(peer) || InBackoff(peer, now)) continue;
            Want(peer, LinkRoles.LongDistance);
            longDistance++;
        }

        // Apply: add what is new, then drop what we no longer want (see DropUnwanted for what is kept).
        foreach (var (peer, link) in _links)
            link.Roles = wanted.Remove(peer, out var roles) ? roles : LinkRoles.None;
        foreach (var (peer, roles) in wanted)
        {
            _links[peer] = new Link { Roles = roles };
            Changes++;
            _controller.Connect(peer, roles);
        }
        DropUnwanted();
    }

    /// <summary>
    /// Ends the links this node holds for no role of its own, except three kinds. A link the peer set up is the
    /// peer's to end. A link to a peer that has this node among its own successors is one the peer wants: ending it
    /// would only make the peer set it up again. And, make before break, a link that is up stays while a link this node
    /// wants is still being set up: the one it would make way for may never come up (a member that joined but cannot
    /// be reached), and until then the old link carries the traffic. When the last wanted link comes up or fails, the
    /// rest go.
    /// </summary>
    private void DropUnwanted()
    {
        var pending = AnyWantedPending();
        foreach (var (peer, link) in _links.ToArray())
        {
            if (link.Roles != LinkRoles.None || link.Incoming || (link.Up && pending) || Succeeds(peer, _options.MinSuccessors)) continue;
            _links.Remove(peer);
            Changes++;
            _controller.Disconnect(peer);
        }
    }

    /// <summary>True while a link this node wants for a role of its own is not up yet.</summary>
    private bool AnyWantedPending()
    {
        foreach (var link in _links.Values)
            if (link.Roles != LinkRoles.None && !link.Up) return true;
        return false;
    }

    /// <summary>
    /// Symphony's draw: a ring fraction x = e^{ln(n)·(r−1)} for r uniform in [0,1) — the harmonic
    /// density 1/(x ln n) on [1/n, 1) — and the first member at or after self + x·2^128.
    /// </summary>
    internal UInt128? DrawLongDistance()
    {
        var n = _peers.Count;
        if (n < 2) return null;
        var x = Math.Exp(Math.Log(n) * (_random.NextDouble() - 1.0));
        var target = _peers.FirstAtOrAfter(Ring.Advance(_self, x));
        return target == _self ? _peers.After(_self, 0) : target;
    }

    private bool InBackoff(UInt128 peer, DateTimeOffset now) => _backoff.TryGetValue(peer, out var b) && b.NotBefore > now;

    private int CountIncomingOnly()
    {
        var n = 0;
        foreach (var link in _links.Values) if (link.Incoming && link.Roles == LinkRoles.None) n++;
        return n;
    }

    private int CountSuccessorRoles()
    {
        var n = 0;
        foreach (var link in _links.Values) if ((link.Roles & LinkRoles.Successor) != 0) n++;
        return n;
    }

    private sealed class Link
    {
        public LinkRoles Roles;
        public bool Up;
        public bool Incoming;
        public DateTimeOffset? IdleSince;
    }

    private readonly record struct Backoff(int Attempts, DateTimeOffset NotBefore);
}
