using System.Net;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Topology;

namespace Overlay;

/// <summary>What happened to a link.</summary>
public enum LinkChange
{
    /// <summary>Negotiation started (this node asked, or accepted a peer's offer).</summary>
    Connecting,
    /// <summary>ICE found a path and the DTLS handshake authenticated the peer: frames flow.</summary>
    Up,
    /// <summary>The path fell silent; the link is recovering (ICE restart) and is not used meanwhile.</summary>
    Down,
    /// <summary>Setup or recovery failed; the topology retries later with backoff.</summary>
    Failed,
    /// <summary>Closed on purpose (no longer wanted by either side, or the peer left).</summary>
    Closed,
}

/// <summary>A change of one link of one overlay.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="PeerNodeId">The peer's node ID.</param>
/// <param name="LinkId">The link's ID (chosen by the side that offered it).</param>
/// <param name="Change">What happened.</param>
/// <param name="Path">The selected candidate pair, once known.</param>
/// <param name="Reason">Why it failed or closed, or empty.</param>
/// <param name="Elapsed">For <see cref="LinkChange.Up"/>: time since negotiation or recovery started.</param>
public sealed record LinkEvent(string OverlayId, string PeerNodeId, string LinkId, LinkChange Change, LinkPath? Path, string Reason, TimeSpan Elapsed);

/// <summary>A change of the node's signaling connection.</summary>
/// <param name="State">The state it is in now.</param>
/// <param name="Reason">Why the connection was lost or a reconnection failed, or empty.</param>
public sealed record SignalingEvent(SignalingState State, string Reason);

/// <summary>The path a link uses.</summary>
/// <param name="LocalType">Type of the local candidate (host, srflx, prflx, relay).</param>
/// <param name="Local">Local candidate address.</param>
/// <param name="RemoteType">Type of the remote candidate.</param>
/// <param name="Remote">Remote candidate address.</param>
public sealed record LinkPath(IceCandidateType LocalType, IPEndPoint Local, IceCandidateType RemoteType, IPEndPoint Remote)
{
    /// <summary>True when the path goes through a TURN relay.</summary>
    public bool Relayed => LocalType == IceCandidateType.Relayed || RemoteType == IceCandidateType.Relayed;

    /// <inheritdoc />
    public override string ToString() => $"{LocalType} {Local} -> {RemoteType} {Remote}";
}

/// <summary>A snapshot of a node.</summary>
/// <param name="NodeId">The node's ID.</param>
/// <param name="Fingerprint">Its certificate fingerprint (what peers check).</param>
/// <param name="Signaling">The signaling connection's state.</param>
/// <param name="Overlays">One entry per overlay.</param>
public sealed record OverlayNodeStatus(string NodeId, string Fingerprint, SignalingState Signaling, IReadOnlyList<OverlayStatus> Overlays)
{
    /// <summary>
    /// Signaling addresses that also announce this node's ID (a copied key and configuration): peers keep whichever node
    /// they listed first and refuse the other, so this one may be refused. Empty when there is no conflict.
    /// </summary>
    public IReadOnlyList<string> NodeIdConflicts { get; init; } = [];
}

/// <summary>A snapshot of one overlay on a node.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="Device">The virtual NIC's name.</param>
/// <param name="Mac">Its MAC address.</param>
/// <param name="Members">Members known (including this node).</param>
/// <param name="Links">The links, up or being set up.</param>
/// <param name="Switch">The switch's counters.</param>
/// <param name="LearnedAddresses">MAC addresses the switch has learned.</param>
/// <param name="RefusedSignals">Signals from members this overlay refused: malformed offers, candidates or actions, and
/// new links offered by the same peer beyond a burst of three and one a second after it.</param>
public sealed record OverlayStatus(string OverlayId, string Device, string Mac, int Members, IReadOnlyList<LinkStatus> Links,
    SwitchStatus Switch, int LearnedAddresses, long RefusedSignals);

/// <summary>A snapshot of one link.</summary>
/// <param name="PeerNodeId">The peer.</param>
/// <param name="LinkId">The link's ID.</param>
/// <param name="Roles">Why this node wants the link (None: kept for the peer's sake).</param>
/// <param name="State">Connecting, Up, Down (recovering).</param>
/// <param name="Initiator">True when this node offered the link.</param>
/// <param name="Path">The selected candidate pair, once known.</param>
/// <param name="RoundTrip">Last keepalive round trip.</param>
/// <param name="Statistics">Frames, bytes and drops, once the link carries frames.</param>
/// <param name="Since">When the link entered its current state.</param>
public sealed record LinkStatus(string PeerNodeId, string LinkId, LinkRoles Roles, LinkChange State, bool Initiator, LinkPath? Path,
    TimeSpan? RoundTrip, Links.LinkStatistics? Statistics, DateTimeOffset Since);

/// <summary>Counters of an overlay's switch.</summary>
/// <param name="LocalIn">Frames from the local device.</param>
/// <param name="LinkIn">Frames from links.</param>
/// <param name="Delivered">Frames written to the local device.</param>
/// <param name="Forwarded">Frame copies sent on links.</param>
/// <param name="Dropped">Frames dropped for any reason (malformed, oversize, duplicate, no port...).</param>
/// <param name="NotLearned">Frames whose address or path went unlearned because the switch's table was full (still forwarded).</param>
public sealed record SwitchStatus(long LocalIn, long LinkIn, long Delivered, long Forwarded, long Dropped, long NotLearned)
{
    /// <summary>Broadcasts, multicast and unknown unicast this switch flooded into the overlay (as the flood's root).</summary>
    public long Floods { get; init; }

    /// <summary>
    /// Of <see cref="Floods"/>, unicast frames flooded because the switch knew no way to their address: normal for a
    /// conversation's first frames; a count that keeps growing means frames keep missing their way.
    /// </summary>
    public long UnknownUnicastFloods { get; init; }

    /// <summary>
    /// Broadcasts in the local host's name after another switch flooded a frame for it: that switch had no way here (a
    /// link on the way went down), and every switch learns the way again from the announcement.
    /// </summary>
    public long Announcements { get; init; }

    /// <summary>
    /// Flood copies this switch sent around a missing ring link (a ring neighbour no link could reach, behind NATs or
    /// firewalls that no link crosses): zero where every member is linked to its ring neighbours.
    /// </summary>
    public long GapCopies { get; init; }

    /// <summary>
    /// Frames that came from the neighbour their way led back to (two switches pointing at each other for one address, as
    /// after a crash took away a switch on the way): that way was forgotten and the frame flooded, so it still arrived.
    /// </summary>
    public long PathLoopsBroken { get; init; }

    /// <summary>TCP SYNs to or from the local host whose MSS was lowered to what their link's path MTU takes.</summary>
    public long MssClamped { get; init; }

    /// <summary>Frames from the local host too large for their link, answered with ICMP "fragmentation needed" or ICMPv6 "packet too big" (in <see cref="Dropped"/>).</summary>
    public long TooBigAnswered { get; init; }

    /// <summary>Frames too large for their link with no ICMP answer due (not IP, forwarded ones), dropped (in <see cref="Dropped"/>).</summary>
    public long TooBigDropped { get; init; }

    /// <summary>IPv4 packets from the local host without DF, too large for their link, sent in fragments that fit (as a router does).</summary>
    public long Fragmented { get; init; }

    /// <summary>
    /// <see cref="Dropped"/> by reason, every reason listed (snake-case names, as the metric <c>overlay.frames.dropped</c>
    /// tags them): runt, oversize, own_root, outside_arc, hop_limit, duplicate, loop, send_failed, unknown_port,
    /// not_from_root, address_not_owned, relayed_from_linked_owner, too_big_answered, too_big_dropped.
    /// </summary>
    public IReadOnlyDictionary<string, long> DropsByReason { get; init; } = new Dictionary<string, long>();
}
