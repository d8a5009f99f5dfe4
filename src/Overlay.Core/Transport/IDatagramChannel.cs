namespace Overlay.Transport;

/// <summary>
/// A datagram path to one peer, as chosen by ICE (direct or through a TURN relay). It is the seam
/// between NAT traversal and the TinCan link: the link's DTLS handshake and its sealed data packets
/// travel over it without knowing how the path was found.
/// </summary>
/// <remarks>
/// Demultiplexing on the shared UDP socket follows RFC 7983 (first byte): 0–3 STUN (handled by ICE),
/// 20–63 DTLS and 192–255 Overlay data packets (both delivered to <see cref="IDatagramReceiver"/>),
/// 64–79 TURN ChannelData (unwrapped by the TURN client, then demultiplexed again).
/// </remarks>
internal interface IDatagramChannel
{
    /// <summary>Bytes the channel may write in front of a payload (for example 4 for TURN ChannelData).</summary>
    int Headroom { get; }

    /// <summary>
    /// Bytes the path adds to each datagram on the wire: IP and UDP headers (28 over IPv4, 48 over IPv6), plus the TURN
    /// ChannelData header on a relayed path. A datagram of n bytes makes an outer IP packet of n + this.
    /// </summary>
    int PathOverhead => 28;

    /// <summary>
    /// Sends one datagram. <paramref name="buffer"/> holds <see cref="Headroom"/> free bytes followed by the
    /// <paramref name="payloadLength"/>-byte payload; the channel may frame it in place. With a <paramref name="batch"/>
    /// the datagram may be queued (copied) in it, to leave with the batch's others when it completes. Never blocks on
    /// the network; returns false (and counts) when the datagram could not be queued.
    /// </summary>
    bool TrySend(Span<byte> buffer, int payloadLength, DataPathBatch? batch = null);

    /// <summary>Sets the receiver of DTLS and data datagrams arriving on this path.</summary>
    void SetReceiver(IDatagramReceiver? receiver);
}

/// <summary>Receives datagrams from an <see cref="IDatagramChannel"/>.</summary>
internal interface IDatagramReceiver
{
    /// <summary>
    /// Called on the socket's event loop with one datagram and the loop's <paramref name="batch"/> (null when the datagram
    /// comes from elsewhere, for example held since before the receiver was set); the span is valid only during the
    /// call. Must not throw and must not block.
    /// </summary>
    void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch);
}
