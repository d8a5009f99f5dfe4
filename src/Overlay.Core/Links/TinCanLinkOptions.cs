using Overlay.Transport;

namespace Overlay.Links;

/// <summary>Timings and limits of a <see cref="TinCanLink"/>.</summary>
internal sealed record TinCanLinkOptions
{
    /// <summary>Largest Ethernet payload (the overlay MTU, EdgeVPN's 1410); larger frames are dropped and counted.</summary>
    public int Mtu { get; init; } = Switching.Frames.EthernetFrame.OverlayMtu;

    /// <summary>How often a keepalive is sent (and the link's liveness checked).</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Silence after which the peer or path is declared dead (at most 10 s by default).</summary>
    public TimeSpan DeadPeerTimeout { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Time allowed for the DTLS handshake.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Packets sealed under one key before the link moves to the next key epoch (well inside AES-GCM's limits).</summary>
    public ulong RekeyAfterPackets { get; init; } = 1UL << 30;

    /// <summary>Time after which the link moves to the next key epoch whatever the traffic.</summary>
    public TimeSpan RekeyInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>The overlay's own trust anchor (<c>TrustedCertificates</c>) that the peer's certificate must satisfy; null: none.</summary>
    public TrustAnchor? Trust { get; init; }

    /// <summary>Told each round trip a keepalive echo measures (on the receive thread, once a keepalive interval).</summary>
    public Action<TimeSpan>? RoundTripMeasured { get; init; }

    /// <summary>
    /// Whether the link discovers its path MTU (RFC 8899 probes) and keeps every datagram within it. Off, it sends frames
    /// up to <see cref="MaxFrameLength"/> whatever the path takes, as links did before.
    /// </summary>
    public bool PathMtuDiscovery { get; init; } = true;

    /// <summary>
    /// How often the path MTU in use is confirmed by a probe of that size (black-hole detection, RFC 8899 §4.3), rounded up
    /// to the next multiple of <see cref="KeepaliveInterval"/> on the monotonic clock, where the keepalives go.
    /// </summary>
    public TimeSpan PathMtuConfirmInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How often a larger path MTU is searched for (RFC 8899 §5.1.1's PMTU_RAISE_TIMER).</summary>
    public TimeSpan PathMtuRaiseInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Largest Ethernet frame carried: MTU plus a 14-byte header and a 4-byte VLAN tag.</summary>
    public int MaxFrameLength => Mtu + 18;

    internal void Validate()
    {
        if (Mtu is < 576 or > 9000) throw new ArgumentOutOfRangeException(nameof(Mtu), Mtu, "the overlay MTU must be 576..9000");
        if (KeepaliveInterval <= TimeSpan.Zero || DeadPeerTimeout <= KeepaliveInterval)
            throw new ArgumentOutOfRangeException(nameof(DeadPeerTimeout), "DeadPeerTimeout must exceed a positive KeepaliveInterval");
    }
}

/// <summary>Where a link is in its life.</summary>
internal enum LinkState
{
    /// <summary>Handshaking.</summary>
    Connecting,
    /// <summary>Keys agreed, frames flow.</summary>
    Connected,
    /// <summary>The peer or path fell silent; the path may be restored with <see cref="TinCanLink.ReplaceChannel"/>.</summary>
    Disconnected,
    /// <summary>The handshake failed (wrong certificate, timeout).</summary>
    Failed,
    /// <summary>Closed by its owner.</summary>
    Closed,
    /// <summary>The peer said goodbye over the link itself (it is stopping or leaving the overlay).</summary>
    Ended,
}

/// <summary>Receives what arrives on a link.</summary>
internal interface ILinkFrameReceiver
{
    /// <summary>
    /// A frame (or flood frame) from the peer, with the batch of the burst it came in (null when it came alone): what
    /// the frame causes to be sent may join it. The span is valid only during the call.
    /// </summary>
    void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, DataPathBatch? batch);
}

/// <summary>A snapshot of a link's counters.</summary>
public sealed record LinkStatistics(long FramesSent, long BytesSent, long FramesReceived, long BytesReceived,
    long DroppedOversize, long DroppedMalformed, long DroppedForged, long DroppedReplayed, long DroppedTooOld, long DroppedUnknownEpoch,
    long SendFailures, TimeSpan? RoundTrip, int KeyEpoch, long Rotations)
{
    /// <summary>
    /// The largest outer IP packet the link's path takes, found by probing (RFC 8899): 1280 until a probe confirms more,
    /// and no datagram of the link is ever larger. 0 with discovery off.
    /// </summary>
    public int PathMtu { get; init; }

    /// <summary>Frames dropped because, sealed, they would have exceeded <see cref="PathMtu"/>.</summary>
    public long DroppedTooBigForPath { get; init; }

    /// <summary>True once the first path MTU search has ended (until then <see cref="PathMtu"/> is the base, 1280).</summary>
    public bool PathMtuSearched { get; init; }

    /// <summary>Path MTU probes sent.</summary>
    public long PathMtuProbes { get; init; }

    /// <summary>Times the path MTU in use stopped getting through (a black hole) and the link fell back to 1280.</summary>
    public long PathMtuBlackHoles { get; init; }
}
