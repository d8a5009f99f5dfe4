namespace Overlay.Links;

/// <summary>
/// What a sealed link packet carries; the low six bits of its first byte (RFC 7983 leaves 192–255 to us). Kinds 4 and up
/// came with path MTU discovery: a peer from before it counts them as malformed and drops them, so it never answers a
/// probe and the link keeps the base MTU (1280) toward it.
/// </summary>
internal enum PacketKind : byte
{
    /// <summary>A plain Ethernet frame.</summary>
    Frame = 0,

    /// <summary>A bounded-flood frame: the switch's flood header followed by the Ethernet frame.</summary>
    FloodFrame = 1,

    /// <summary>A keepalive; the peer answers with <see cref="KeepaliveEcho"/> (RTT).</summary>
    Keepalive = 2,

    /// <summary>The answer to a keepalive, echoing its payload.</summary>
    KeepaliveEcho = 3,

    /// <summary>
    /// A path MTU probe (RFC 8899 §4.1): a probe number and padding, so the whole datagram has the size being tried. The
    /// peer answers with a small <see cref="ProbeAck"/>, never an echo of the padding (the way back may be smaller).
    /// </summary>
    Probe = 4,

    /// <summary>The answer to a <see cref="Probe"/>: its number and the size of the datagram that arrived.</summary>
    ProbeAck = 5,
}
