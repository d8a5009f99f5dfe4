using System.Buffers.Binary;

namespace Overlay.Switching.Frames;

/// <summary>
/// What the switch does for the local host when a link's path takes less than the host's MTU (as tinc does for its
/// nodes): TCP SYNs get their MSS option lowered to what fits, so TCP never sends larger segments; an IPv4 packet with DF
/// that does not fit is answered with ICMP "fragmentation needed" (RFC 792, RFC 1191) and an IPv6 one with ICMPv6
/// "packet too big" (RFC 4443 §3.2), so the host's own path MTU discovery (RFC 1191, RFC 8201) learns the size.
/// All of it works in the caller's spans: nothing is allocated.
/// </summary>
internal static class PathFit
{
    private const ushort EtherTypeIPv4 = 0x0800, EtherTypeIPv6 = 0x86DD;
    private const byte ProtocolIcmp = 1, ProtocolTcp = 6, NextHeaderIcmpV6 = 58;
    private const int IPv4HeaderLength = 20, IPv6HeaderLength = 40, TcpHeaderLength = 20, IcmpHeaderLength = 8;
    private const int IcmpV4Limit = 576;   // RFC 1812 §4.3.2.3: an ICMP error's datagram stays within 576 bytes
    private const int IcmpV6Limit = 1280;  // RFC 4443 §2.4(c): within the minimum IPv6 MTU
    private const byte TcpFlagSyn = 0x02;
    private const byte TcpOptionEnd = 0, TcpOptionNop = 1, TcpOptionMss = 2;

    /// <summary>The longest frame <see cref="WriteTooBig"/> writes (Ethernet header with two VLAN tags and an ICMPv6 error).</summary>
    public const int MaxTooBigFrame = 22 + IcmpV6Limit;

    /// <summary>True when <paramref name="frame"/> is an IPv4 or IPv6 TCP segment with SYN set (no extension headers followed).</summary>
    public static bool IsTcpSyn(ReadOnlySpan<byte> frame) => TryFindTcp(frame, out _, out _, out var tcp) && (frame[tcp + 13] & TcpFlagSyn) != 0;

    /// <summary>
    /// Lowers the MSS option of a TCP SYN in <paramref name="frame"/> so that segments fit in frames of
    /// <paramref name="maxFrameLength"/> bytes, fixing the TCP checksum incrementally (RFC 1624); true when it changed.
    /// </summary>
    public static bool ClampMss(Span<byte> frame, int maxFrameLength)
    {
        if (!TryFindTcp(frame, out var ip, out var v6, out var tcp) || (frame[tcp + 13] & TcpFlagSyn) == 0) return false;
        var limit = maxFrameLength - ip - (v6 ? IPv6HeaderLength : IPv4HeaderLength) - TcpHeaderLength; // RFC 879, RFC 8200 §8.3
        if (limit <= 0) return false;
        var optionsEnd = tcp + (frame[tcp + 12] >> 4) * 4;
        if (optionsEnd > frame.Length) return false;
        for (var i = tcp + TcpHeaderLength; i < optionsEnd;)
        {
            var kind = frame[i];
            if (kind == TcpOptionEnd) break;
            if (kind == TcpOptionNop)
            {
                i++;
                continue;
            }
            if (i + 1 >= optionsEnd || frame[i + 1] < 2 || i + frame[i + 1] > optionsEnd) return false;
            if (kind == TcpOptionMss && frame[i + 1] == 4)
            {
                var mss = BinaryPrimitives.ReadUInt16BigEndian(frame[(i + 2)..]);
                if (mss <= limit) return false;
                BinaryPrimitives.WriteUInt16BigEndian(frame[(i + 2)..], (ushort)limit);
                // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). A word at an odd offset of the segment adds byte-swapped.
                var odd = ((i + 2 - tcp) & 1) != 0;
                var oldWord = odd ? BinaryPrimitives.ReverseEndianness(mss) : mss;
                var newWord = odd ? BinaryPrimitives.ReverseEndianness((ushort)limit) : (ushort)limit;
                var checksum = BinaryPrimitives.ReadUInt16BigEndian(frame[(tcp + 16)..]);
                var sum = (uint)(ushort)~checksum + (ushort)~oldWord + newWord;
                sum = (sum & 0xFFFF) + (sum >> 16);
                sum = (sum & 0xFFFF) + (sum >> 16);
                BinaryPrimitives.WriteUInt16BigEndian(frame[(tcp + 16)..], (ushort)~sum);
                return true;
            }
            i += frame[i + 1];
        }
        return false;
    }

    /// <summary>
    /// Writes into <paramref name="output"/> the frame that tells the sender of <paramref name="frame"/> (the local host) that
    /// it does not fit a path taking frames of <paramref name="maxFrameLength"/>: ICMP "fragmentation needed" for IPv4 with DF,
    /// ICMPv6 "packet too big" for IPv6, from the packet's destination address (the host checks only what the error quotes).
    /// Returns its length, or 0 when no error is due: not IP, IPv4 without DF (dropped), an ICMP error itself, or a sender
    /// address no error may go to (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)).
    /// </summary>
    public static int WriteTooBig(ReadOnlySpan<byte> frame, int maxFrameLength, Span<byte> output)
    {
        if (!EthernetFrame.TryGetPayload(frame, out var etherType, out var ip) || output.Length < MaxTooBigFrame) return 0;
        var mtu = maxFrameLength - ip;
        if (mtu <= 0) return 0;
        return etherType switch
        {
            EtherTypeIPv4 => WriteFragmentationNeeded(frame, ip, mtu, output),
            EtherTypeIPv6 => WritePacketTooBig(frame, ip, mtu, output),
            _ => 0,
        };
    }

    private static int WriteFragmentationNeeded(ReadOnlySpan<byte> frame, int ip, int mtu, Span<byte> output)
    {
        var packet = frame[ip..];
        if (packet.Length < IPv4HeaderLength || packet[0] >> 4 != 4) return 0;
        var headerLength = (packet[0] & 0x0F) * 4;
        if (headerLength < IPv4HeaderLength || packet.Length < headerLength) return 0;
        var flags = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]);
        if ((flags & 0x4000) == 0 || (flags & 0x1FFF) != 0) return 0; // no DF, or not the first fragment
        if (packet[9] == ProtocolIcmp && (packet.Length < headerLength + 1 || IsIcmpV4Error(packet[headerLength]))) return 0;
        var source = packet.Slice(12, 4);
        if (source[0] is 0 or >= 224 || source[0] == 127) return 0; // unspecified, loopback, multicast or reserved senders
        var quoted = Math.Min(packet.Length, IcmpV4Limit - IPv4HeaderLength - IcmpHeaderLength);
        var length = IPv4HeaderLength + IcmpHeaderLength + quoted;
        WriteEthernet(frame, ip, output);
        var reply = output.Slice(ip, length);
        reply[0] = 0x45;
        reply[1] = 0xC0; // internetwork control, as routers send their errors
        BinaryPrimitives.WriteUInt16BigEndian(reply[2..], (ushort)length);
        BinaryPrimitives.WriteUInt32BigEndian(reply[4..], 0); // identification, no flags
        reply[8] = 64;
        reply[9] = ProtocolIcmp;
        packet.Slice(16, 4).CopyTo(reply[12..]); // from the address the packet was for
        source.CopyTo(reply[16..]);
        InternetChecksum.SetIPv4HeaderChecksum(reply[..IPv4HeaderLength]);
        var icmp = reply[IPv4HeaderLength..];
        icmp[0] = 3; // destination unreachable
        icmp[1] = 4; // fragmentation needed and DF set
        BinaryPrimitives.WriteUInt32BigEndian(icmp[2..], 0); // checksum and unused
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], (ushort)Math.Min(mtu, ushort.MaxValue)); // RFC 1191 §4: next-hop MTU
        packet[..quoted].CopyTo(icmp[IcmpHeaderLength..]);
        InternetChecksum.Store(icmp[2..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(icmp[..(IcmpHeaderLength + quoted)])));
        return ip + length;
    }

    private static int WritePacketTooBig(ReadOnlySpan<byte> frame, int ip, int mtu, Span<byte> output)
    {
        var packet = frame[ip..];
        if (packet.Length < IPv6HeaderLength || packet[0] >> 4 != 6) return 0;
        if (packet[6] == NextHeaderIcmpV6 && (packet.Length < IPv6HeaderLength + 1 || packet[IPv6HeaderLength] < 128)) return 0; // an error itself
        var source = packet.Slice(8, 16);
        if (source[0] == 0xFF || source.IndexOfAnyExcept((byte)0) < 0) return 0; // multicast or unspecified sender
        var quoted = Math.Min(packet.Length, IcmpV6Limit - IPv6HeaderLength - IcmpHeaderLength);
        var length = IPv6HeaderLength + IcmpHeaderLength + quoted;
        WriteEthernet(frame, ip, output);
        var reply = output.Slice(ip, length);
        BinaryPrimitives.WriteUInt32BigEndian(reply, 0x6000_0000);
        BinaryPrimitives.WriteUInt16BigEndian(reply[4..], (ushort)(IcmpHeaderLength + quoted));
        reply[6] = NextHeaderIcmpV6;
        reply[7] = 64;
        packet.Slice(24, 16).CopyTo(reply[8..]); // from the address the packet was for
        source.CopyTo(reply[24..]);
        var icmp = reply[IPv6HeaderLength..];
        icmp[0] = 2; // packet too big
        icmp[1] = 0;
        icmp[2] = icmp[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], (uint)mtu);
        packet[..quoted].CopyTo(icmp[IcmpHeaderLength..]);
        var sum = InternetChecksum.PseudoHeader(reply, v6: true, NextHeaderIcmpV6, IcmpHeaderLength + quoted);
        InternetChecksum.Store(icmp[2..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(icmp[..(IcmpHeaderLength + quoted)], sum)));
        return ip + length;
    }

    /// <summary>
    /// Writes the next fragment of an IPv4 packet without DF that does not fit frames of <paramref name="maxFrameLength"/>
    /// (RFC 791 §3.2, as a router fragments it), starting at byte <paramref name="position"/> of its data, which it
    /// advances; returns the fragment frame's length, or 0 when there is nothing (more) to write: not IPv4, DF set, IP
    /// options (left unfragmented: they would have to be sorted by their copy flag), or no room for eight bytes of data.
    /// </summary>
    public static int WriteFragment(ReadOnlySpan<byte> frame, int maxFrameLength, ref int position, Span<byte> output)
    {
        if (!EthernetFrame.TryGetPayload(frame, out var etherType, out var ip) || etherType != EtherTypeIPv4) return 0;
        var packet = frame[ip..];
        if (packet.Length < IPv4HeaderLength || packet[0] != 0x45) return 0;
        var flags = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]);
        if ((flags & 0x4000) != 0) return 0;
        var total = Math.Min(BinaryPrimitives.ReadUInt16BigEndian(packet[2..]), packet.Length);
        var data = packet[IPv4HeaderLength..Math.Max(IPv4HeaderLength, total)];
        var room = (maxFrameLength - ip - IPv4HeaderLength) / 8 * 8; // fragment offsets count 8-byte units
        if (position >= data.Length || room <= 0) return 0;
        var chunk = Math.Min(room, data.Length - position);
        var length = ip + IPv4HeaderLength + chunk;
        if (output.Length < length) return 0;
        frame[..(ip + IPv4HeaderLength)].CopyTo(output);
        var header = output.Slice(ip, IPv4HeaderLength);
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)(IPv4HeaderLength + chunk));
        var more = position + chunk < data.Length || (flags & 0x2000) != 0; // a fragment of a fragment keeps its MF
        var offset = (flags & 0x1FFF) + position / 8;
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], (ushort)((more ? 0x2000 : 0) | offset));
        InternetChecksum.SetIPv4HeaderChecksum(header);
        data.Slice(position, chunk).CopyTo(output[(ip + IPv4HeaderLength)..]);
        position += chunk;
        return length;
    }

    /// <summary>The reply's Ethernet header: the frame's, with source and destination swapped (VLAN tags kept).</summary>
    private static void WriteEthernet(ReadOnlySpan<byte> frame, int ip, Span<byte> output)
    {
        frame[..ip].CopyTo(output);
        frame[6..12].CopyTo(output);
        frame[..6].CopyTo(output[6..]);
    }

    /// <summary>ICMP error types (RFC 1122 §3.2.2: no error about an error): unreachable, source quench, redirect, time exceeded, parameter problem.</summary>
    private static bool IsIcmpV4Error(byte type) => type is 3 or 4 or 5 or 11 or 12;

    /// <summary>Finds the IP header (offset in the frame) and the TCP header of a first-fragment TCP segment.</summary>
    private static bool TryFindTcp(ReadOnlySpan<byte> frame, out int ip, out bool v6, out int tcp)
    {
        tcp = 0;
        v6 = false;
        if (!EthernetFrame.TryGetPayload(frame, out var etherType, out ip)) return false;
        if (etherType == EtherTypeIPv4)
        {
            if (frame.Length < ip + IPv4HeaderLength || frame[ip] >> 4 != 4 || frame[ip + 9] != ProtocolTcp) return false;
            if ((BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 6)..]) & 0x1FFF) != 0) return false;
            tcp = ip + (frame[ip] & 0x0F) * 4;
        }
        else if (etherType == EtherTypeIPv6)
        {
            if (frame.Length < ip + IPv6HeaderLength || frame[ip + 6] != ProtocolTcp) return false;
            v6 = true;
            tcp = ip + IPv6HeaderLength;
        }
        else
        {
            return false;
        }
        return frame.Length >= tcp + TcpHeaderLength;
    }
}
