namespace Overlay.Signaling;

/// <summary>
/// A typed signaling payload. On the wire it is one JSON object inside one element of namespace
/// <c>urn:overlay:signal:1</c> (see <see cref="SignalCodec"/>); the sender's node ID and the correlation ID
/// travel in the same object and are filled in by the channel.
/// </summary>
/// <param name="OverlayId">The overlay the message is about; the receiver must serve it.</param>
internal abstract record SignalMessage(string OverlayId);

/// <summary>Request: asks the peer to accept an edge of the given kind (topology negotiation).</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="EdgeType">The edge kind, e.g. <c>successor</c>, <c>longdistance</c>, <c>ondemand</c>, <c>static</c>.</param>
internal sealed record EdgeRequest(string OverlayId, string EdgeType) : SignalMessage(OverlayId);

/// <summary>Response to an <see cref="EdgeRequest"/>.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="Accepted">True when the peer accepts the edge.</param>
/// <param name="Reason">Why the edge was rejected (or empty).</param>
internal sealed record EdgeResponse(string OverlayId, bool Accepted, string Reason) : SignalMessage(OverlayId);

/// <summary>What both sides of a link tell each other: ICE credentials, candidates, DTLS fingerprint, MAC.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="LinkId">The link's ID (chosen by the offerer).</param>
/// <param name="IceUfrag">ICE username fragment, random per link (RFC 8445 §5.3).</param>
/// <param name="IcePassword">ICE password, random per link.</param>
/// <param name="Candidates">Candidates as RFC 8839 candidate-attribute strings, kept opaque here.</param>
/// <param name="Fingerprint">The DTLS certificate fingerprint, e.g. <c>sha-256 AB:CD:…</c>.</param>
/// <param name="Mac">The sender's MAC address on the overlay.</param>
internal abstract record LinkDescription(
    string OverlayId, string LinkId, string IceUfrag, string IcePassword,
    IReadOnlyList<string> Candidates, string Fingerprint, string Mac) : SignalMessage(OverlayId);

/// <summary>Request: offers a link; answered by <see cref="LinkAnswer"/> or <see cref="LinkReject"/>.</summary>
internal sealed record LinkOffer(
    string OverlayId, string LinkId, string IceUfrag, string IcePassword,
    IReadOnlyList<string> Candidates, string Fingerprint, string Mac)
    : LinkDescription(OverlayId, LinkId, IceUfrag, IcePassword, Candidates, Fingerprint, Mac)
{
    /// <summary>
    /// The edge kind, as an <see cref="EdgeRequest"/> carries it, when the offer asks for the edge itself (no edge request
    /// before it, one signaling round trip less); null in an ICE restart's offer and from nodes that sent an edge request
    /// first. Optional on the wire (<c>"edge"</c>): a node that does not know it takes the offer as an unrequested edge.
    /// </summary>
    public string? EdgeType { get; init; }
}

/// <summary>Response: accepts a <see cref="LinkOffer"/> with the answerer's side of the link.</summary>
internal sealed record LinkAnswer(
    string OverlayId, string LinkId, string IceUfrag, string IcePassword,
    IReadOnlyList<string> Candidates, string Fingerprint, string Mac)
    : LinkDescription(OverlayId, LinkId, IceUfrag, IcePassword, Candidates, Fingerprint, Mac);

/// <summary>Response: refuses a <see cref="LinkOffer"/>.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="LinkId">The offered link.</param>
/// <param name="Reason">Why.</param>
internal sealed record LinkReject(string OverlayId, string LinkId, string Reason) : SignalMessage(OverlayId);

/// <summary>Notification: one trickled ICE candidate for a link (RFC 8838), as an opaque RFC 8839 string.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="LinkId">The link.</param>
/// <param name="Candidate">The candidate attribute, e.g. <c>candidate:1 1 udp 2130706431 fe80::1 5000 typ host</c>.</param>
internal sealed record LinkCandidate(string OverlayId, string LinkId, string Candidate) : SignalMessage(OverlayId);

/// <summary>Notification: the sender tears the link down.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="LinkId">The link.</param>
/// <param name="Reason">Why.</param>
internal sealed record LinkTeardown(string OverlayId, string LinkId, string Reason) : SignalMessage(OverlayId);
