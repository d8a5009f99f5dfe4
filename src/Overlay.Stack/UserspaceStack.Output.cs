using System.Buffers.Binary;
using Overlay.Stack.Ip;
using Overlay.Stack.Tcp;
using Overlay.Switching.Frames;

namespace Overlay.Stack;

/// <summary>What leaves: every frame is written into the one transmit buffer (under the lock) and handed to the switch.</summary>
public sealed partial class UserspaceStack
{
    private const int EthernetHeader = 14;

    /// <summary>Writes the Ethernet and IP headers for an L4 payload of <paramref name="l4Length"/> bytes; returns where L4 starts.</summary>
    private int WriteHeaders(ulong destinationMac, UInt128 source, UInt128 destination, byte protocol, int l4Length, byte hopLimit = 64)
    {
        var frame = _tx.AsSpan();
        Addresses.WriteMac(frame, destinationMac);
        Addresses.WriteMac(frame[6..], Mac);
        if (Addresses.IsV4(destination))
        {
            BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeIPv4);
            var ip = frame.Slice(EthernetHeader, 20);
            ip[0] = 0x45;
            ip[1] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + l4Length));
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], _ipId++);
            BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000); // don't fragment: the stack's segments fit the MTU
            ip[8] = hopLimit;
            ip[9] = protocol;
            Addresses.WriteV4(ip[12..], source);
            Addresses.WriteV4(ip[16..], destination);
            InternetChecksum.SetIPv4HeaderChecksum(ip);
            return EthernetHeader + 20;
        }
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeIPv6);
        var ip6 = frame.Slice(EthernetHeader, 40);
        BinaryPrimitives.WriteUInt32BigEndian(ip6, 0x6000_0000);
        BinaryPrimitives.WriteUInt16BigEndian(ip6[4..], (ushort)l4Length);
        ip6[6] = protocol;
        ip6[7] = hopLimit;
        Addresses.WriteV6(ip6[8..], source);
        Addresses.WriteV6(ip6[24..], destination);
        return EthernetHeader + 40;
    }

    /// <summary>Fills in the L4 checksum at <paramref name="checksumOffset"/> (from L4's start) and sends the frame.</summary>
    private void ChecksumAndSend(int l4Start, int l4Length, byte protocol, int checksumOffset)
    {
        var frame = _tx.AsSpan();
        var l4 = frame.Slice(l4Start, l4Length);
        l4[checksumOffset] = 0;
        l4[checksumOffset + 1] = 0;
        var ipHeader = frame[EthernetHeader..l4Start];
        var sum = (ushort)~InternetChecksum.Fold(InternetChecksum.Add(l4, InternetChecksum.PseudoHeader(ipHeader, ipHeader.Length == 40, protocol, l4Length)));
        if (protocol == ProtocolUdp && sum == 0) sum = 0xffff; // RFC 768: a computed zero is sent as all ones
        InternetChecksum.Store(l4[checksumOffset..], sum);
        Transmit(l4Start + l4Length);
    }

    private void Transmit(int length)
    {
        var sink = _sink;
        if (sink is null || _disposed) return;
        Interlocked.Increment(ref Statistics.FramesOutValue);
        Interlocked.Increment(ref Counters.FramesReadValue);
        Interlocked.Add(ref Counters.BytesReadValue, length);
        try
        {
            var batch = _burstDepth > 0 ? _batch : null;
            if (batch is not null) _burstPending = true;
            sink.OnFrame(_tx.AsSpan(0, length), batch);
        }
        catch (Exception) when (!_disposed)
        {
            Interlocked.Increment(ref Counters.SinkErrorsValue); // the switch must not throw; if it does, the stack goes on
        }
    }

    private void SendArp(ushort operation, ulong destinationMac, ulong targetMac, UInt128 targetIp)
    {
        if (LocalV4 is not { } local) return;
        var frame = _tx.AsSpan();
        Addresses.WriteMac(frame, destinationMac);
        Addresses.WriteMac(frame[6..], Mac);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeArp);
        var arp = frame.Slice(EthernetHeader, 28);
        BinaryPrimitives.WriteUInt16BigEndian(arp, 1);
        BinaryPrimitives.WriteUInt16BigEndian(arp[2..], EtherTypeIPv4);
        arp[4] = 6;
        arp[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(arp[6..], operation);
        Addresses.WriteMac(arp[8..], Mac);
        Addresses.WriteV4(arp[14..], local);
        Addresses.WriteMac(arp[18..], targetMac);
        Addresses.WriteV4(arp[24..], targetIp);
        frame.Slice(EthernetHeader + 28, 18).Clear(); // padded to Ethernet's 60-byte minimum
        Transmit(60);
    }

    /// <summary>Under the lock: an ARP request or a Neighbor Solicitation (RFC 4861 §7.2.2) for <paramref name="address"/>.</summary>
    internal void SendNeighborRequest(UInt128 address)
    {
        if (Addresses.IsV4(address))
        {
            SendArp(1, Broadcast, 0, address);
            return;
        }
        if (LocalV6 is not { } local) return;
        var group = Addresses.SolicitedNode(address);
        var l4 = WriteHeaders(Addresses.MulticastMac(group), local, group, ProtocolIcmpV6, 32, hopLimit: 255);
        var icmp = _tx.AsSpan(l4, 32);
        icmp.Clear();
        icmp[0] = 135;
        Addresses.WriteV6(icmp[8..], address);
        icmp[24] = 1; // source link-layer address option
        icmp[25] = 1;
        Addresses.WriteMac(icmp[26..], Mac);
        ChecksumAndSend(l4, 32, ProtocolIcmpV6, 2);
    }

    private void SendNeighborAdvertisement(ulong destinationMac, UInt128 destination, bool solicited)
    {
        if (LocalV6 is not { } local) return;
        var l4 = WriteHeaders(destinationMac, local, destination, ProtocolIcmpV6, 32, hopLimit: 255);
        var icmp = _tx.AsSpan(l4, 32);
        icmp.Clear();
        icmp[0] = 136;
        icmp[4] = (byte)(solicited ? 0x60 : 0x20); // solicited, override (RFC 4861 §4.4)
        Addresses.WriteV6(icmp[8..], local);
        icmp[24] = 2; // target link-layer address option
        icmp[25] = 1;
        Addresses.WriteMac(icmp[26..], Mac);
        ChecksumAndSend(l4, 32, ProtocolIcmpV6, 2);
    }

    private void SendEchoReply(ulong destinationMac, UInt128 destination, ReadOnlySpan<byte> request, bool v6)
    {
        var local = v6 ? LocalV6 : LocalV4;
        if (local is null) return;
        var headers = v6 ? EthernetHeader + 40 : EthernetHeader + 20;
        if (headers + request.Length > _tx.Length) return;
        var l4 = WriteHeaders(destinationMac, local.Value, destination, v6 ? ProtocolIcmpV6 : ProtocolIcmp, request.Length);
        var icmp = _tx.AsSpan(l4, request.Length);
        request.CopyTo(icmp);
        icmp[0] = (byte)(v6 ? 129 : 0);
        if (v6) ChecksumAndSend(l4, request.Length, ProtocolIcmpV6, 2);
        else
        {
            icmp[2] = 0;
            icmp[3] = 0;
            InternetChecksum.Store(icmp[2..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(icmp)));
            Transmit(l4 + request.Length);
        }
        Interlocked.Increment(ref Statistics.EchoRepliesValue);
    }

    /// <summary>Under the lock: a reset for a segment that has no connection (or that a connection refuses).</summary>
    internal void SendReset(ulong destinationMac, UInt128 local, UInt128 remote, ushort localPort, ushort remotePort, uint seq, uint ack, TcpFlags flags)
    {
        var l4 = WriteHeaders(destinationMac, local, remote, ProtocolTcp, 20);
        var tcp = _tx.AsSpan(l4, 20);
        TcpSegment.WriteHeader(tcp, localPort, remotePort, seq, ack, flags, 0, 20);
        ChecksumAndSend(l4, 20, ProtocolTcp, 16);
        Interlocked.Increment(ref Statistics.ResetsSentValue);
    }

    /// <summary>
    /// Under the lock: one segment of <paramref name="connection"/>: header, options (
    /// bytes written by the connection) and <paramref name="payloadLength"/> bytes of its send buffer from <paramref name="seq"/>.
    /// </summary>
    internal void SendSegment(TcpConnection connection, uint seq, TcpFlags flags, int payloadLength)
    {
        Span<byte> options = stackalloc byte[40];
        var optionsLength = connection.WriteOptions(options, flags);
        var headerLength = 20 + optionsLength;
        var l4Length = headerLength + payloadLength;
        var l4 = WriteHeaders(connection.PeerMac, connection.Local, connection.Key.Remote, ProtocolTcp, l4Length);
        var tcp = _tx.AsSpan(l4, l4Length);
        TcpSegment.WriteHeader(tcp, connection.Key.LocalPort, connection.Key.RemotePort, seq, connection.RcvNxt, flags, connection.AdvertiseWindow(flags), headerLength);
        options[..optionsLength].CopyTo(tcp[20..]);
        if (payloadLength > 0) connection.CopyPayload(seq, tcp.Slice(headerLength, payloadLength));
        ChecksumAndSend(l4, l4Length, ProtocolTcp, 16);
        Interlocked.Increment(ref Statistics.SegmentsOutValue);
    }

    /// <summary>The largest TCP payload a segment to <paramref name="remote"/> can carry on this MTU, before options.</summary>
    internal int MaxSegmentFor(UInt128 remote) => Mtu - (Addresses.IsV4(remote) ? 40 : 60);

    /// <summary>Under the lock: a UDP datagram; false when the destination's MAC address is not known.</summary>
    internal bool SendDatagram(UInt128 remote, int remotePort, int localPort, ReadOnlySpan<byte> payload)
    {
        if (LocalFor(remote) is not { } local || !_neighbors.TryGet(remote, out var mac)) return false;
        var l4Length = 8 + payload.Length;
        var l4 = WriteHeaders(mac, local, remote, ProtocolUdp, l4Length);
        var udp = _tx.AsSpan(l4, l4Length);
        BinaryPrimitives.WriteUInt16BigEndian(udp, (ushort)localPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], (ushort)remotePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)l4Length);
        payload.CopyTo(udp[8..]);
        ChecksumAndSend(l4, l4Length, ProtocolUdp, 6);
        Interlocked.Increment(ref Statistics.DatagramsOutValue);
        return true;
    }
}
