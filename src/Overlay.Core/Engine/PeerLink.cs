using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Switching;
using Overlay.Switching.Flood;

namespace Overlay.Engine;

/// <summary>Where a link is in its life. <see cref="PeerLink.IsLegal"/> lists every move between these.</summary>
internal enum PeerLinkState
{
    /// <summary>Ours: the edge request is out (the peer may hold a place for us from now on).</summary>
    Requesting,

    /// <summary>Ours: the offer is out and unanswered; candidates gathered meanwhile are held back so none overtakes it.</summary>
    Offering,

    /// <summary>The peer's: its offer arrived and our answer is not out yet (candidates go into the answer).</summary>
    Answering,

    /// <summary>Offer and answer exchanged: ICE checks, then the DTLS handshake. Later candidates are trickled.</summary>
    Connecting,

    /// <summary>Authenticated and a port of the switch.</summary>
    Up,

    /// <summary>Fell silent: out of the switch, waiting for ICE to find a path back (or for the recovery timeout).</summary>
    Down,

    /// <summary>Down, and our ICE restart offer is out and unanswered.</summary>
    Restarting,

    /// <summary>Ended; resources released or being released.</summary>
    Closed,
}

/// <summary>The coarse phase of a link, as reported in setup failures (the states before Up are all negotiation).</summary>
internal enum LinkPhase
{
    Negotiating,
    Up,
    Down,
    Closed,
}

/// <summary>What to do with a local candidate gathered now (RFC 8838 trickling).</summary>
internal enum CandidateRoute
{
    /// <summary>Our description has not gone out yet: it will carry the candidate.</summary>
    InDescription,

    /// <summary>Our offer is out but unanswered: held until the answer comes (<see cref="PeerLink.TakeHeldCandidates"/>).</summary>
    Held,

    /// <summary>Send it on its own now.</summary>
    Trickle,
}

/// <summary>
/// One link of one overlay to one peer, as the link manager tracks it: a state machine (<see cref="State"/>, moved only
/// by <see cref="TryMoveTo"/>, which refuses illegal moves), the path, the TinCan link once authenticated, and the
/// switch port. State moves are serialised by a lock because the offer goes out beside the control queue and
/// candidates are gathered on the path's threads; <see cref="OnFrame"/> runs on the socket's receive thread.
/// </summary>
internal sealed class PeerLink : ILinkFrameReceiver
{
    private readonly OverlaySwitch _switch;
    private readonly Lock _gate = new();
    private List<IceCandidate> _held = [];
    private PeerLinkState _state;
    private long _malformedFloods;

    public PeerLink(UInt128 peer, string linkId, bool initiator, OverlaySwitch sw, DateTimeOffset now)
    {
        Peer = peer;
        PeerNodeId = new Switching.NodeId(peer).ToString();
        SwitchId = new NodeId(peer);
        LinkId = linkId;
        Initiator = initiator;
        _state = initiator ? PeerLinkState.Requesting : PeerLinkState.Answering;
        _switch = sw;
        Since = now;
        Started = now;
    }

    public UInt128 Peer { get; }
    public string PeerNodeId { get; }
    public NodeId SwitchId { get; }
    public string LinkId { get; }
    public bool Initiator { get; }
    public CancellationTokenSource Lifetime { get; } = new();

    public PeerLinkState State
    {
        get { lock (_gate) return _state; }
    }

    /// <summary>The coarse phase (status, failure reasons).</summary>
    public LinkPhase Phase => State switch
    {
        PeerLinkState.Up => LinkPhase.Up,
        PeerLinkState.Down or PeerLinkState.Restarting => LinkPhase.Down,
        PeerLinkState.Closed => LinkPhase.Closed,
        _ => LinkPhase.Negotiating,
    };

    /// <summary>Since when the link is in its phase (creation, up, down).</summary>
    public DateTimeOffset Since { get; private set; }

    /// <summary>When the current attempt started (creation, or going down): link events report the time since.</summary>
    public DateTimeOffset Started { get; private set; }

    /// <summary>When our last ICE restart offer went out.</summary>
    public DateTimeOffset LastRestart { get; private set; }

    public ILinkPath? Agent { get; private set; }
    public TinCanLink? Link { get; private set; }
    public LinkPort? Port { get; private set; }
    public LinkPath? Path { get; private set; }
    public CertificateFingerprint PeerFingerprint { get; private set; }

    /// <summary>Whether the peer may know this link (our edge request, offer or answer went out), so a teardown means something to it.</summary>
    public bool KnownToPeer => Initiator || State != PeerLinkState.Answering;

    public long MalformedFloods => Interlocked.Read(ref _malformedFloods);

    /// <summary>The span of this link's setup (edge request, offer, ICE, DTLS), while it runs and someone listens.</summary>
    public System.Diagnostics.Activity? Setup { get; set; }

    /// <summary>Ends the setup span, once: up, failed or abandoned.</summary>
    public void EndSetup(System.Diagnostics.ActivityStatusCode status, string description)
    {
        if (Interlocked.Exchange(ref _setupEnded, 1) != 0 || Setup is not { } activity) return;
        activity.SetStatus(status, description.Length == 0 ? null : description);
        activity.Stop();
    }

    private int _setupEnded;
    private readonly List<(string Phase, DateTimeOffset At)> _phases = [];

    /// <summary>
    /// Notes when a setup phase was reached (edge accepted, offer answered, candidates gathered, the peer's first
    /// trickled candidate, ICE selected, DTLS authenticated); the first time of each counts. The "up" log line gives them.
    /// </summary>
    public void Mark(string phase, DateTimeOffset at)
    {
        lock (_gate)
        {
            if (_phases.Count < 16 && !_phases.Exists(p => p.Phase == phase)) _phases.Add((phase, at));
        }
    }

    /// <summary>The phases so far, in milliseconds since <see cref="Started"/>: "edge 120, offer 210, ...".</summary>
    public string Phases
    {
        get
        {
            lock (_gate)
                return string.Join(", ", _phases.OrderBy(p => p.At).Select(p =>
                    string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{p.Phase} {(p.At - Started).TotalMilliseconds:0}")));
        }
    }

    /// <summary>The moves a link may make; everything else is refused.</summary>
    public static bool IsLegal(PeerLinkState from, PeerLinkState to) => (from, to) switch
    {
        (PeerLinkState.Closed, _) => false,
        (_, PeerLinkState.Closed) => true,
        (PeerLinkState.Requesting, PeerLinkState.Offering) => true,
        (PeerLinkState.Offering, PeerLinkState.Connecting) => true,
        (PeerLinkState.Answering, PeerLinkState.Connecting) => true,
        (PeerLinkState.Connecting, PeerLinkState.Up) => true,
        (PeerLinkState.Up, PeerLinkState.Down) => true,
        (PeerLinkState.Down, PeerLinkState.Up) => true,
        (PeerLinkState.Down, PeerLinkState.Restarting) => true,
        (PeerLinkState.Restarting, PeerLinkState.Down) => true,
        (PeerLinkState.Restarting, PeerLinkState.Up) => true,
        _ => false,
    };

    /// <summary>Moves to <paramref name="next"/> if that move is legal; false (and no change) otherwise.</summary>
    public bool TryMoveTo(PeerLinkState next, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!IsLegal(_state, next)) return false;
            if (next == PeerLinkState.Up) Since = now;
            else if (_state == PeerLinkState.Up && next == PeerLinkState.Down)
            {
                Since = Started = now;
                _phases.Clear(); // a recovery's phases are its own
            }
            else if (next == PeerLinkState.Restarting) LastRestart = now;
            _state = next;
            return true;
        }
    }

    /// <summary>
    /// Takes our offer or answer with <paramref name="snapshot"/> and marks it sent in the same step, so that a
    /// candidate gathered meanwhile is either in it or routed after it (<see cref="RouteCandidate"/>), never lost.
    /// </summary>
    public T Describe<T>(Func<T> snapshot, DateTimeOffset now)
    {
        lock (_gate)
        {
            var description = snapshot();
            if (_state == PeerLinkState.Requesting) TryMoveTo(PeerLinkState.Offering, now);
            else if (_state == PeerLinkState.Answering) TryMoveTo(PeerLinkState.Connecting, now);
            return description;
        }
    }

    /// <summary>Where a candidate gathered now goes; a held one is kept here.</summary>
    public CandidateRoute RouteCandidate(IceCandidate candidate)
    {
        lock (_gate)
        {
            switch (_state)
            {
                case PeerLinkState.Requesting or PeerLinkState.Answering:
                    return CandidateRoute.InDescription;
                case PeerLinkState.Offering:
                    _held.Add(candidate);
                    return CandidateRoute.Held;
                default:
                    return CandidateRoute.Trickle;
            }
        }
    }

    /// <summary>The peer answered our offer: from now on candidates are trickled; those held meanwhile are returned to send.</summary>
    public IReadOnlyList<IceCandidate> TakeHeldCandidates(DateTimeOffset now)
    {
        lock (_gate)
        {
            TryMoveTo(PeerLinkState.Connecting, now);
            var held = _held;
            _held = [];
            return held;
        }
    }

    /// <summary>The path this link negotiates over (set once).</summary>
    public void UsePath(ILinkPath agent)
    {
        if (Agent is not null) throw new InvalidOperationException("the link already has a path");
        Agent = agent;
    }

    /// <summary>The TinCan link running over the path once ICE selected a pair (set once).</summary>
    public void UseTinCan(TinCanLink link)
    {
        if (Link is not null) throw new InvalidOperationException("the link already has a TinCan link");
        Link = link;
    }

    /// <summary>The switch port the link is while up.</summary>
    public void UsePort(LinkPort port) => Port = port;

    /// <summary>The certificate fingerprint the peer signalled (its offer or answer).</summary>
    public void ExpectFingerprint(CertificateFingerprint fingerprint) => PeerFingerprint = fingerprint;

    /// <summary>The MAC the peer advertised for its host on the overlay (its offer or answer), as the switch keys it.</summary>
    public ulong? PeerMac { get; private set; }

    /// <summary>Notes the MAC the peer advertised; a malformed one is ignored (the link works without the binding).</summary>
    public void Advertised(string? mac)
    {
        var text = mac?.Replace(":", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal);
        if (text is { Length: 12 } && ulong.TryParse(text, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out var key)
            && (key >> 40 & 1) == 0)
            PeerMac = key;
    }

    /// <summary>The pair ICE selected; false when it is the path already known.</summary>
    public bool RouteOver(IceSelectedPair pair)
    {
        var path = PathOf(pair);
        if (path == Path) return false;
        Path = path;
        return true;
    }

    public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, Transport.DataPathBatch? batch)
    {
        if (kind == PacketKind.Frame)
        {
            _switch.OnLinkFrame(SwitchId, payload, batch);
        }
        else if (kind == PacketKind.FloodFrame)
        {
            if (FloodHeader.TryRead(payload, out var header)) _switch.OnLinkFlood(SwitchId, header, payload[FloodHeader.Length..], batch);
            else Interlocked.Increment(ref _malformedFloods);
        }
    }

    public static LinkPath PathOf(IceSelectedPair pair) => new(pair.Local.Type, pair.Local.Address, pair.Remote.Type, pair.Remote.Address);
}
