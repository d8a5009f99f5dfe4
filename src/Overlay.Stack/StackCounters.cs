namespace Overlay.Stack;

/// <summary>Why the stack dropped a frame or a packet; each reason has a counter in <see cref="StackCounters"/>.</summary>
public enum StackDropReason
{
    /// <summary>Shorter than an Ethernet header, or longer than the MTU allows.</summary>
    FrameLength,
    /// <summary>Addressed to another MAC address.</summary>
    NotOurMac,
    /// <summary>An EtherType the stack does not speak (VLAN tags included).</summary>
    UnsupportedEtherType,
    /// <summary>An ARP packet that is not Ethernet/IPv4 or is cut short.</summary>
    ArpMalformed,
    /// <summary>An IPv4 header with a bad version, header length or total length.</summary>
    IPv4Malformed,
    /// <summary>An IPv4 header whose checksum does not add up.</summary>
    IPv4Checksum,
    /// <summary>An IPv6 header with a bad version or payload length.</summary>
    IPv6Malformed,
    /// <summary>An IP fragment: the stack refuses fragments rather than keeping reassembly state for the network.</summary>
    Fragment,
    /// <summary>An IP packet for another address.</summary>
    NotOurAddress,
    /// <summary>An IP protocol (or IPv6 extension header) the stack does not speak.</summary>
    UnsupportedProtocol,
    /// <summary>An ICMP or ICMPv6 message cut short or with a bad checksum.</summary>
    IcmpMalformed,
    /// <summary>An ICMP message the stack does not act on.</summary>
    IcmpIgnored,
    /// <summary>A UDP datagram with a bad length or checksum.</summary>
    UdpMalformed,
    /// <summary>A UDP datagram for a port nobody has bound.</summary>
    UdpNoSocket,
    /// <summary>A UDP datagram its socket had no room for.</summary>
    UdpQueueFull,
    /// <summary>A TCP segment with a bad header length, options or checksum.</summary>
    TcpMalformed,
    /// <summary>A TCP segment for no connection (answered with a reset unless it was one).</summary>
    TcpNoConnection,
    /// <summary>A TCP segment outside the receive window or with an unacceptable acknowledgment.</summary>
    TcpOutOfWindow,
    /// <summary>A half-open connection dropped for a newer SYN (the half-open bound).</summary>
    TcpHalfOpenEvicted,
    /// <summary>A SYN refused because the connection table is full.</summary>
    TcpConnectionTableFull,
    /// <summary>A connection reset because its listener's accept queue was full.</summary>
    TcpAcceptQueueFull,
    /// <summary>An out-of-order segment dropped because the reassembly list was full.</summary>
    TcpReassemblyFull,
    /// <summary>A frame refused because the stack's inbound queue was full.</summary>
    InboundQueueFull,
}

/// <summary>What the stack did and dropped, safe to read from any thread.</summary>
public sealed class StackCounters
{
    private static readonly int ReasonCount = Enum.GetValues<StackDropReason>().Length;
    private readonly long[] _drops = new long[ReasonCount];
    internal long FramesInValue;
    internal long FramesOutValue;
    internal long SegmentsInValue;
    internal long SegmentsOutValue;
    internal long RetransmitsValue;
    internal long FastRetransmitsValue;
    internal long TimeoutsValue;
    internal long ConnectionsOpenedValue;
    internal long ResetsSentValue;
    internal long EchoRepliesValue;
    internal long DatagramsInValue;
    internal long DatagramsOutValue;

    internal void Drop(StackDropReason reason) => Interlocked.Increment(ref _drops[(int)reason]);

    /// <summary>Frames or packets dropped for <paramref name="reason"/>.</summary>
    public long Dropped(StackDropReason reason) => Volatile.Read(ref _drops[(int)reason]);

    /// <summary>Everything dropped, whatever the reason.</summary>
    public long TotalDropped
    {
        get
        {
            long total = 0;
            for (var i = 0; i < _drops.Length; i++) total += Volatile.Read(ref _drops[i]);
            return total;
        }
    }

    /// <summary>Frames the stack received.</summary>
    public long FramesIn => Volatile.Read(ref FramesInValue);

    /// <summary>Frames the stack sent.</summary>
    public long FramesOut => Volatile.Read(ref FramesOutValue);

    /// <summary>TCP segments received and accepted by a connection.</summary>
    public long SegmentsIn => Volatile.Read(ref SegmentsInValue);

    /// <summary>TCP segments sent.</summary>
    public long SegmentsOut => Volatile.Read(ref SegmentsOutValue);

    /// <summary>TCP segments sent again (after a timeout or a fast retransmit).</summary>
    public long Retransmits => Volatile.Read(ref RetransmitsValue);

    /// <summary>Fast retransmits (three duplicate acknowledgments, RFC 5681 §3.2).</summary>
    public long FastRetransmits => Volatile.Read(ref FastRetransmitsValue);

    /// <summary>Retransmission timeouts (RFC 6298).</summary>
    public long Timeouts => Volatile.Read(ref TimeoutsValue);

    /// <summary>TCP connections that reached ESTABLISHED.</summary>
    public long ConnectionsOpened => Volatile.Read(ref ConnectionsOpenedValue);

    /// <summary>TCP resets sent.</summary>
    public long ResetsSent => Volatile.Read(ref ResetsSentValue);

    /// <summary>ICMP / ICMPv6 echo replies sent.</summary>
    public long EchoReplies => Volatile.Read(ref EchoRepliesValue);

    /// <summary>UDP datagrams delivered to sockets.</summary>
    public long DatagramsIn => Volatile.Read(ref DatagramsInValue);

    /// <summary>UDP datagrams sent.</summary>
    public long DatagramsOut => Volatile.Read(ref DatagramsOutValue);

    /// <summary>Open connections (all states), half-open ones among them: gauges set by the stack.</summary>
    public int Connections { get; internal set; }

    /// <summary>Half-open connections (SYN received, not yet acknowledged).</summary>
    public int HalfOpen { get; internal set; }
}
