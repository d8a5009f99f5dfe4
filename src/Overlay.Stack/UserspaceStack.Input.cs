using System.Buffers.Binary;
using Overlay.Stack.Ip;
using Overlay.Stack.Tcp;
using Overlay.Switching.Frames;

namespace Overlay.Stack;

/// <summary>What arrives: Ethernet, ARP, IPv4, IPv6 and ICMP, checked field by field before use; TCP and UDP are handed on.</summary>
public sealed partial class UserspaceStack
{
    private const ushort EtherTypeIPv4 = 0x0800;
    private const ushort EtherTypeArp = 0x0806;
    private const ushort EtherTypeIPv6 = 0x86DD;
    private const byte ProtocolIcmp = 1;
    private const byte ProtocolTcp = 6;
    private const byte ProtocolUdp = 17;
    private const byte ProtocolIcmpV6 = 58;
    private const ulong Broadcast = 0xffff_ffff_ffffUL;

    /// <summary>Under the lock: one frame from the network. Malformed input is dropped and counted, never thrown.</summary>
    internal void OnFrame(ReadOnlySpan<byte> frame)
    {
        Interlocked.Increment(ref Statistics.FramesInValue);
        if (frame.Length < 14 || frame.Length > Mtu + 14)
        {
            Statistics.Drop(StackDropReason.FrameLength);
            return;
        }
        var destination = Addresses.ReadMac(frame);
        var source = Addresses.ReadMac(frame[6..]);
        var type = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        var payload = frame[14..];
        // Ours, broadcast, or IPv6 multicast (33:33:..., RFC 2464 §7) for Neighbor Discovery; a frame from our own MAC
        // or from a multicast source is nobody's.
        var multicast6 = destination >> 32 == 0x3333;
        if ((destination != Mac && destination != Broadcast && !multicast6) || (source & 0x0100_0000_0000UL) != 0 || source == Mac)
        {
            Statistics.Drop(StackDropReason.NotOurMac);
            return;
        }
        switch (type)
        {
            case EtherTypeArp:
                OnArp(payload);
                break;
            case EtherTypeIPv4 when destination != Broadcast:
                OnIPv4(source, payload);
                break;
            case EtherTypeIPv6:
                OnIPv6(source, destination, payload);
                break;
            default:
                Statistics.Drop(StackDropReason.UnsupportedEtherType);
                break;
        }
    }

    private void OnArp(ReadOnlySpan<byte> arp)
    {
        // RFC 826: hardware Ethernet (1), protocol IPv4, lengths 6 and 4.
        if (arp.Length < 28 || BinaryPrimitives.ReadUInt16BigEndian(arp) != 1 || BinaryPrimitives.ReadUInt16BigEndian(arp[2..]) != EtherTypeIPv4
            || arp[4] != 6 || arp[5] != 4)
        {
            Statistics.Drop(StackDropReason.ArpMalformed);
            return;
        }
        var operation = BinaryPrimitives.ReadUInt16BigEndian(arp[6..]);
        var senderMac = Addresses.ReadMac(arp[8..]);
        var senderIp = Addresses.ReadV4(arp[14..]);
        var targetIp = Addresses.ReadV4(arp[24..]);
        if (operation is not (1 or 2) || (senderMac & 0x0100_0000_0000UL) != 0)
        {
            Statistics.Drop(StackDropReason.ArpMalformed);
            return;
        }
        var forUs = LocalV4 is { } local && targetIp == local;
        // RFC 826's merge: refresh a known sender; learn a new one only when the packet is for us (a reply to our request,
        // or a request we answer), so other hosts' chatter does not fill the table.
        if (forUs || _neighbors.TryGet(senderIp, out _) || _resolving.ContainsKey(senderIp)) LearnNeighbor(senderIp, senderMac);
        if (operation == 1 && forUs) SendArp(2, senderMac, senderMac, senderIp);
    }

    private void LearnNeighbor(UInt128 address, ulong mac)
    {
        _neighbors.Set(address, mac);
        if (_resolving.Remove(address, out var waiter)) waiter.TrySetResult(mac);
    }

    private void OnIPv4(ulong sourceMac, ReadOnlySpan<byte> ip)
    {
        if (ip.Length < 20 || ip[0] >> 4 != 4)
        {
            Statistics.Drop(StackDropReason.IPv4Malformed);
            return;
        }
        var headerLength = (ip[0] & 0x0f) * 4;
        var totalLength = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
        if (headerLength < 20 || totalLength < headerLength || totalLength > ip.Length)
        {
            Statistics.Drop(StackDropReason.IPv4Malformed);
            return;
        }
        if (InternetChecksum.Fold(InternetChecksum.Add(ip[..headerLength])) != 0xffff)
        {
            Statistics.Drop(StackDropReason.IPv4Checksum);
            return;
        }
        // More fragments, or a fragment offset (RFC 791 §3.1): refused, so no reassembly state is kept for the network.
        if ((BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3fff) != 0)
        {
            Statistics.Drop(StackDropReason.Fragment);
            return;
        }
        var source = Addresses.ReadV4(ip[12..]);
        var destination = Addresses.ReadV4(ip[16..]);
        if (LocalV4 is not { } local || destination != local)
        {
            Statistics.Drop(StackDropReason.NotOurAddress);
            return;
        }
        var sourceV4 = Addresses.ToV4(source);
        if (sourceV4 == 0 || sourceV4 >> 28 >= 14 || sourceV4 == uint.MaxValue)
        {
            Statistics.Drop(StackDropReason.IPv4Malformed); // a multicast, broadcast or unspecified source (RFC 1122 §3.2.1.3)
            return;
        }
        var header = ip[..headerLength];
        var payload = ip[headerLength..totalLength];
        switch (ip[9])
        {
            case ProtocolTcp:
                OnTcp(sourceMac, header, source, destination, payload);
                break;
            case ProtocolUdp:
                OnUdp(header, source, destination, payload);
                break;
            case ProtocolIcmp:
                OnIcmpV4(sourceMac, source, payload);
                break;
            default:
                Statistics.Drop(StackDropReason.UnsupportedProtocol);
                break;
        }
    }

    private void OnIcmpV4(ulong sourceMac, UInt128 source, ReadOnlySpan<byte> icmp)
    {
        if (icmp.Length < 8 || InternetChecksum.Fold(InternetChecksum.Add(icmp)) != 0xffff)
        {
            Statistics.Drop(StackDropReason.IcmpMalformed);
            return;
        }
        if (icmp[0] != 8 || icmp[1] != 0) // echo request (RFC 792)
        {
            Statistics.Drop(StackDropReason.IcmpIgnored);
            return;
        }
        SendEchoReply(sourceMac, source, icmp, v6: false);
    }

    private void OnIPv6(ulong sourceMac, ulong destinationMac, ReadOnlySpan<byte> ip)
    {
        if (ip.Length < 40 || ip[0] >> 4 != 6)
        {
            Statistics.Drop(StackDropReason.IPv6Malformed);
            return;
        }
        var payloadLength = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
        if (40 + payloadLength > ip.Length)
        {
            Statistics.Drop(StackDropReason.IPv6Malformed);
            return;
        }
        var source = Addresses.ReadV6(ip[8..]);
        var destination = Addresses.ReadV6(ip[24..]);
        if (LocalV6 is not { } local || (destination != local && destination != Addresses.SolicitedNode(local)
            && destination != ((UInt128)0xff02_0000_0000_0000UL << 64 | 1)))
        {
            Statistics.Drop(StackDropReason.NotOurAddress);
            return;
        }
        if (source >> 120 == 0xff)
        {
            Statistics.Drop(StackDropReason.IPv6Malformed); // a multicast source (RFC 4291 §2.7)
            return;
        }
        var multicastDestination = destination != local;
        var header = ip[..40];
        var payload = ip.Slice(40, payloadLength);
        switch (ip[6])
        {
            case ProtocolTcp when !multicastDestination:
                OnTcp(sourceMac, header, source, destination, payload);
                break;
            case ProtocolUdp when !multicastDestination:
                OnUdp(header, source, destination, payload);
                break;
            case ProtocolIcmpV6:
                OnIcmpV6(sourceMac, header, source, payload, ip[7]);
                break;
            case 44: // the fragment header (RFC 8200 §4.5)
                Statistics.Drop(StackDropReason.Fragment);
                break;
            default:
                Statistics.Drop(StackDropReason.UnsupportedProtocol);
                break;
        }
        _ = destinationMac;
    }

    private void OnIcmpV6(ulong sourceMac, ReadOnlySpan<byte> ipHeader, UInt128 source, ReadOnlySpan<byte> icmp, byte hopLimit)
    {
        if (icmp.Length < 8 || InternetChecksum.Fold(InternetChecksum.Add(icmp, InternetChecksum.PseudoHeader(ipHeader, true, ProtocolIcmpV6, icmp.Length))) != 0xffff)
        {
            Statistics.Drop(StackDropReason.IcmpMalformed);
            return;
        }
        switch (icmp[0])
        {
            case 128 when icmp[1] == 0: // echo request (RFC 4443 §4.1)
                SendEchoReply(sourceMac, source, icmp, v6: true);
                break;
            case 135 or 136:
                // Neighbor Solicitation / Advertisement (RFC 4861 §7.1.1, §7.1.2): hop limit 255, code 0, 24 bytes at least.
                if (hopLimit != 255 || icmp[1] != 0 || icmp.Length < 24)
                {
                    Statistics.Drop(StackDropReason.IcmpMalformed);
                    return;
                }
                var target = Addresses.ReadV6(icmp[8..]);
                if (icmp[0] == 135)
                {
                    if (target != LocalV6)
                    {
                        Statistics.Drop(StackDropReason.NotOurAddress);
                        return;
                    }
                    if (source == 0) SendNeighborAdvertisement(Addresses.MulticastMac(1), (UInt128)0xff02_0000_0000_0000UL << 64 | 1, solicited: false);
                    else
                    {
                        if (_neighbors.TryGet(source, out _) || _resolving.ContainsKey(source)) LearnNeighbor(source, sourceMac);
                        SendNeighborAdvertisement(sourceMac, source, solicited: true);
                    }
                }
                else if (_resolving.ContainsKey(target) || _neighbors.TryGet(target, out _))
                {
                    LearnNeighbor(target, TargetLinkLayerAddress(icmp[24..]) ?? sourceMac);
                }
                else Statistics.Drop(StackDropReason.IcmpIgnored);
                break;
            default:
                Statistics.Drop(StackDropReason.IcmpIgnored);
                break;
        }
    }

    /// <summary>The target link-layer address option (RFC 4861 §4.6.1) of an advertisement, if it has a well-formed one.</summary>
    private static ulong? TargetLinkLayerAddress(ReadOnlySpan<byte> options)
    {
        while (options.Length >= 8)
        {
            var length = options[1] * 8;
            if (length == 0 || length > options.Length) return null;
            if (options[0] == 2 && length == 8) return Addresses.ReadMac(options[2..]);
            options = options[length..];
        }
        return null;
    }

    private void OnUdp(ReadOnlySpan<byte> ipHeader, UInt128 source, UInt128 destination, ReadOnlySpan<byte> udp)
    {
        var v6 = !Addresses.IsV4(source);
        if (udp.Length < 8)
        {
            Statistics.Drop(StackDropReason.UdpMalformed);
            return;
        }
        var length = BinaryPrimitives.ReadUInt16BigEndian(udp[4..]);
        var checksum = BinaryPrimitives.ReadUInt16BigEndian(udp[6..]);
        // RFC 768: a zero checksum means none was computed (IPv4 only: RFC 8200 §8.1 makes it mandatory on IPv6).
        if (length < 8 || length > udp.Length || (checksum == 0 && v6)
            || (checksum != 0 && InternetChecksum.Fold(InternetChecksum.Add(udp[..length], InternetChecksum.PseudoHeader(ipHeader, v6, ProtocolUdp, length))) != 0xffff))
        {
            Statistics.Drop(StackDropReason.UdpMalformed);
            return;
        }
        var port = BinaryPrimitives.ReadUInt16BigEndian(udp[2..]);
        if (!_udp.TryGetValue(port, out var socket))
        {
            Statistics.Drop(StackDropReason.UdpNoSocket);
            return;
        }
        if (!socket.Deliver(source, BinaryPrimitives.ReadUInt16BigEndian(udp), udp[8..length])) Statistics.Drop(StackDropReason.UdpQueueFull);
        else Interlocked.Increment(ref Statistics.DatagramsInValue);
        _ = destination;
    }

    private void OnTcp(ulong sourceMac, ReadOnlySpan<byte> ipHeader, UInt128 source, UInt128 destination, ReadOnlySpan<byte> tcp)
    {
        var v6 = !Addresses.IsV4(source);
        if (!TcpSegment.TryParse(tcp, out var segment)
            || InternetChecksum.Fold(InternetChecksum.Add(tcp, InternetChecksum.PseudoHeader(ipHeader, v6, ProtocolTcp, tcp.Length))) != 0xffff)
        {
            Statistics.Drop(StackDropReason.TcpMalformed);
            return;
        }
        var key = new TcpKey(source, segment.SourcePort, segment.DestinationPort);
        if (_connections.TryGetValue(key, out var connection))
        {
            // A new SYN for a connection in TIME_WAIT above its last sequence starts a new incarnation (RFC 9293 §3.6.1).
            if (connection.State == TcpState.TimeWait && segment.Syn && !segment.HasAck && TcpSequence.Gt(segment.Seq, connection.RcvNxt))
                connection.Abort(sendReset: false);
            else
            {
                Interlocked.Increment(ref Statistics.SegmentsInValue);
                connection.OnSegment(ref segment, NowMicroseconds());
                return;
            }
        }
        if (segment.Rst)
        {
            Statistics.Drop(StackDropReason.TcpNoConnection);
            return;
        }
        if (segment.Syn && !segment.HasAck && !segment.Fin && _listeners.TryGetValue(segment.DestinationPort, out var listener) && listener.IsOpen)
        {
            OpenPassive(listener, key, destination, sourceMac, ref segment);
            return;
        }
        // RFC 9293 §3.10.7.1: no connection, answered with a reset.
        Statistics.Drop(StackDropReason.TcpNoConnection);
        if (segment.HasAck) SendReset(sourceMac, destination, source, segment.DestinationPort, segment.SourcePort, segment.Ack, 0, TcpFlags.Rst);
        else SendReset(sourceMac, destination, source, segment.DestinationPort, segment.SourcePort, 0, segment.Seq + (uint)segment.SequenceLength, TcpFlags.Rst | TcpFlags.Ack);
    }

    private void OpenPassive(OverlayTcpListener listener, TcpKey key, UInt128 local, ulong sourceMac, ref TcpSegment segment)
    {
        // The half-open bound (a SYN flood): the oldest half-open connection gives way to the new one.
        while (Statistics.HalfOpen >= Options.MaxHalfOpen && _halfOpen.TryDequeue(out var oldest))
        {
            if (oldest.State != TcpState.SynReceived) continue;
            oldest.Abort(sendReset: false);
            Statistics.Drop(StackDropReason.TcpHalfOpenEvicted);
        }
        if (_connections.Count >= Options.MaxConnections && !EvictTimeWait())
        {
            Statistics.Drop(StackDropReason.TcpConnectionTableFull);
            return;
        }
        var connection = new TcpConnection(this, key, local, sourceMac) { Listener = listener };
        _connections.Add(key, connection);
        _halfOpen.Enqueue(connection);
        // Entries that already left SYN_RECEIVED are skipped when they reach the front; the queue itself stays bounded.
        while (_halfOpen.Count > 2 * Options.MaxHalfOpen)
        {
            var stale = _halfOpen.Dequeue();
            if (stale.State != TcpState.SynReceived) continue;
            stale.Abort(sendReset: false);
            Statistics.Drop(StackDropReason.TcpHalfOpenEvicted);
        }
        Statistics.HalfOpen++;
        Statistics.Connections = _connections.Count;
        connection.OpenPassive(ref segment, NowMicroseconds());
    }

    private bool EvictTimeWait()
    {
        foreach (var connection in _connections.Values)
        {
            if (connection.State != TcpState.TimeWait) continue;
            connection.Abort(sendReset: false);
            return true;
        }
        return false;
    }

    internal void LeftHalfOpen() => Statistics.HalfOpen--;

    internal bool HasNeighbor(UInt128 address) => _neighbors.TryGet(address, out _);
}
