using System.Net;
using System.Net.NetworkInformation;

namespace Overlay.Stack;

/// <summary>Settings of a <see cref="UserspaceStack"/>: its addresses and the bounds of every table the network feeds.</summary>
public sealed record UserspaceStackOptions
{
    /// <summary>The NIC's MAC address.</summary>
    public required PhysicalAddress MacAddress { get; init; }

    /// <summary>The stack's IPv4 address; null for none.</summary>
    public IPAddress? IPv4Address { get; init; }

    /// <summary>The IPv6 address; null for none.</summary>
    public IPAddress? IPv6Address { get; init; }

    /// <summary>The largest IP packet (the overlay MTU).</summary>
    public int Mtu { get; init; } = Switching.Frames.EthernetFrame.OverlayMtu;

    /// <summary>TCP connections at most, in every state (half-open and TIME_WAIT included).</summary>
    public int MaxConnections { get; init; } = 4096;

    /// <summary>
    /// Half-open (SYN received) connections at most: past it the oldest is dropped for the new one, so a SYN flood costs a
    /// bounded amount of memory and a real client's retried SYN still gets in once the flood's entries age out.
    /// </summary>
    public int MaxHalfOpen { get; init; } = 256;

    /// <summary>Bytes a connection buffers for the application to read; what is free is the window it advertises.</summary>
    public int ReceiveBufferSize { get; init; } = 256 * 1024;

    /// <summary>Bytes a connection buffers from the application's writes; a full buffer makes <c>WriteAsync</c> wait.</summary>
    public int SendBufferSize { get; init; } = 256 * 1024;

    /// <summary>Frames handed to the stack and not yet processed, at most; more are refused and counted.</summary>
    public int InboundQueueFrames { get; init; } = 2048;

    /// <summary>ARP / Neighbor Discovery entries at most.</summary>
    public int MaxNeighbors { get; init; } = 1024;

    /// <summary>Datagrams a UDP socket holds for its reader at most; more are dropped and counted.</summary>
    public int UdpQueueDatagrams { get; init; } = 256;

    /// <summary>How long a connection closed by this side stays in TIME_WAIT (RFC 9293 §3.6 asks for 2 MSL).</summary>
    public TimeSpan TimeWait { get; init; } = TimeSpan.FromSeconds(30);

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(MacAddress);
        if (MacAddress.GetAddressBytes().Length != 6) throw new ArgumentException("the MAC address must have 6 bytes", nameof(MacAddress));
        if (IPv4Address is { } v4 && v4.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
            throw new ArgumentException($"{v4} is not an IPv4 address", nameof(IPv4Address));
        if (IPv6Address is { } v6 && v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            throw new ArgumentException($"{v6} is not an IPv6 address", nameof(IPv6Address));
        if (Mtu is < 1280 or > 9000) throw new ArgumentOutOfRangeException(nameof(Mtu), Mtu, "the MTU must be 1280..9000");
        if (MaxConnections < 1) throw new ArgumentOutOfRangeException(nameof(MaxConnections));
        if (MaxHalfOpen < 1) throw new ArgumentOutOfRangeException(nameof(MaxHalfOpen));
        if (ReceiveBufferSize is < 4096 or > 64 * 1024 * 1024) throw new ArgumentOutOfRangeException(nameof(ReceiveBufferSize));
        if (SendBufferSize is < 4096 or > 64 * 1024 * 1024) throw new ArgumentOutOfRangeException(nameof(SendBufferSize));
        if (InboundQueueFrames < 16) throw new ArgumentOutOfRangeException(nameof(InboundQueueFrames));
        if (MaxNeighbors < 1) throw new ArgumentOutOfRangeException(nameof(MaxNeighbors));
        if (UdpQueueDatagrams < 1) throw new ArgumentOutOfRangeException(nameof(UdpQueueDatagrams));
        if (TimeWait < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(TimeWait));
    }
}
