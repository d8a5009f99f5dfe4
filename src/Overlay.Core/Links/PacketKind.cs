namespace Overlay.Links;

/// <summary>What a sealed link packet carries; the low bits of its first byte (RFC 7983 leaves 192–255 to us).</summary>
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
}
