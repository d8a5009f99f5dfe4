using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Switching;
using Overlay.Switching.Flood;

namespace Overlay.Engine;

/// <summary>Where a link is in its life.</summary>
internal enum LinkPhase
{
    Negotiating,
    Connecting,
    Up,
    Down,
    Closed,
}

/// <summary>
/// One link of one overlay to one peer, as the link manager tracks it: the negotiation state, the ICE agent, the
/// TinCan link once authenticated, and the switch port. Bookkeeping fields are touched only on the overlay's
/// <see cref="SerialQueue"/>; <see cref="OnFrame"/> runs on the socket's receive thread.
/// </summary>
internal sealed class PeerLink : ILinkFrameReceiver
{
    private readonly OverlaySwitch _switch;
    private long _malformedFloods;

    public PeerLink(UInt128 peer, string linkId, bool initiator, OverlaySwitch sw, DateTimeOffset now)
    {
        Peer = peer;
        PeerNodeId = NodeContext.FormatNodeId(peer);
        SwitchId = new NodeId(peer);
        LinkId = linkId;
        Initiator = initiator;
        HeldCandidates = initiator ? [] : null;
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

    /// <summary>Guards <see cref="DescriptionSent"/> against the agent's candidate events.</summary>
    public Lock TrickleGate { get; } = new();

    public LinkPhase Phase { get; set; } = LinkPhase.Negotiating;
    public DateTimeOffset Since { get; set; }
    public DateTimeOffset Started { get; set; }
    public IceAgent? Agent { get; set; }
    public TinCanLink? Link { get; set; }
    public LinkPort? Port { get; set; }
    public LinkPath? Path { get; set; }
    public CertificateFingerprint PeerFingerprint { get; set; }

    /// <summary>Candidates gathered after our offer went out but before the peer answered it; null once they may flow.</summary>
    public List<IceCandidate>? HeldCandidates { get; set; }

    /// <summary>True once our edge request went out: the peer may hold a place for us until told otherwise.</summary>
    public bool EdgeRequested { get; set; }

    /// <summary>True once our offer or answer went out: later candidates are trickled.</summary>
    public bool DescriptionSent { get; set; }

    /// <summary>An ICE restart offer is out and unanswered.</summary>
    public bool Restarting { get; set; }
    public DateTimeOffset LastRestart { get; set; }

    public long MalformedFloods => Interlocked.Read(ref _malformedFloods);

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
