using System.Buffers.Binary;

namespace Overlay.Switching.Frames;

/// <summary>A host joining or leaving a multicast group, keyed by the group's Ethernet address.</summary>
/// <param name="GroupMac">The group's MAC as a 48-bit key (01:00:5e:… for IPv4, 33:33:… for IPv6).</param>
/// <param name="Join">True for a join (report), false for a leave.</param>
internal readonly record struct GroupChange(ulong GroupMac, bool Join);

/// <summary>
/// Reads IGMPv1/v2/v3 (RFC 1112, 2236, 3376) and MLDv1/v2 (RFC 2710, 3810) membership messages into
/// group changes, without allocating. Anything malformed yields no change.
/// </summary>
internal static class MulticastReport
{
    private const byte IpProtocolIgmp = 2;
    private const byte NextHeaderHopByHop = 0;
    private const byte NextHeaderIcmpV6 = 58;

    /// <summary>
    /// If <paramref name="frame"/> carries a membership report or leave, writes its changes into
    /// <paramref name="changes"/> (up to its length) and returns how many; otherwise 0.
    /// </summary>
    public static int Read(ReadOnlySpan<byte> frame, Span<GroupChange> changes)
    {
        if (!EthernetFrame.TryGetPayload(frame, out var etherType, out var offset)) return 0;
        var ip = frame[offset..];
        return etherType switch
        {
            EthernetFrame.EtherTypeIPv4 => ReadIgmp(ip, changes),
            EthernetFrame.EtherTypeIPv6 => ReadMld(ip, changes),
            _ => 0,
        };
    }

    /// <summary>The MAC an IPv4 group maps to (RFC 1112 §6.4).</summary>
    public static ulong IPv4GroupMac(uint group) => 0x0100_5E00_0000UL | (group & 0x7F_FFFF);

    /// <summary>The MAC an IPv6 group maps to (RFC 2464 §7).</summary>
    public static ulong IPv6GroupMac(ReadOnlySpan<byte> group) => 0x3333_0000_0000UL | BinaryPrimitives.ReadUInt32BigEndian(group[12..]);

    private static int ReadIgmp(ReadOnlySpan<byte> ip, Span<GroupChange> changes)
    {
        if (ip.Length < 20 || ip[0] >> 4 != 4 || ip[9] != IpProtocolIgmp) return 0;
        var headerLength = (ip[0] & 0x0F) * 4;
        var total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
        if (headerLength < 20 || total > ip.Length || total < headerLength + 8) return 0;
        var igmp = ip[headerLength..total];
        switch (igmp[0])
        {
            case 0x12 or 0x16: // v1 / v2 membership report
                return Put(changes, 0, IPv4GroupMac(BinaryPrimitives.ReadUInt32BigEndian(igmp[4..])), join: true);
            case 0x17: // v2 leave group
                return Put(changes, 0, IPv4GroupMac(BinaryPrimitives.ReadUInt32BigEndian(igmp[4..])), join: false);
            case 0x22: // v3 membership report (RFC 3376 §4.2)
                return ReadRecords(igmp, 4, changes, g => IPv4GroupMac(BinaryPrimitives.ReadUInt32BigEndian(g)));
            default:
                return 0;
        }
    }

    private static int ReadMld(ReadOnlySpan<byte> ip, Span<GroupChange> changes)
    {
        if (ip.Length < 40 || ip[0] >> 4 != 6) return 0;
        var payloadLength = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
        if (40 + payloadLength > ip.Length) return 0;
        var next = ip[6];
        var rest = ip.Slice(40, payloadLength);
        if (next == NextHeaderHopByHop) // MLD messages carry a router alert in a hop-by-hop header (RFC 2711)
        {
            if (rest.Length < 8) return 0;
            var length = (rest[1] + 1) * 8;
            if (length > rest.Length) return 0;
            next = rest[0];
            rest = rest[length..];
        }
        if (next != NextHeaderIcmpV6 || rest.Length < 24) return 0;
        switch (rest[0])
        {
            case 131: // MLDv1 report
                return Put(changes, 0, IPv6GroupMac(rest.Slice(8, 16)), join: true);
            case 132: // MLDv1 done
                return Put(changes, 0, IPv6GroupMac(rest.Slice(8, 16)), join: false);
            case 143: // MLDv2 report (RFC 3810 §5.2)
                return ReadRecords(rest, 16, changes, g => IPv6GroupMac(g));
            default:
                return 0;
        }
    }

    private delegate ulong GroupMac(ReadOnlySpan<byte> group);

    /// <summary>IGMPv3 / MLDv2 group records: type(1) aux(1) sources(2) group(n) sources(n·k) aux(4·aux).</summary>
    private static int ReadRecords(ReadOnlySpan<byte> message, int groupLength, Span<GroupChange> changes, GroupMac mac)
    {
        if (message.Length < 8) return 0;
        var records = BinaryPrimitives.ReadUInt16BigEndian(message[6..]);
        var offset = 8;
        var count = 0;
        for (var r = 0; r < records; r++)
        {
            if (offset + 4 + groupLength > message.Length) return count;
            var type = message[offset];
            var aux = message[offset + 1];
            var sources = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 2)..]);
            var group = mac(message.Slice(offset + 4, groupLength));
            var length = 4 + groupLength + sources * groupLength + aux * 4;
            if (offset + length > message.Length) return count;
            // EXCLUDE modes mean "everything but": a join. INCLUDE with sources is a join of those sources;
            // INCLUDE of nothing is a leave. BLOCK_OLD_SOURCES changes no group-level state.
            bool? join = type switch
            {
                2 or 4 => true,
                1 or 3 or 5 => sources > 0 || type == 5 ? (sources > 0 ? true : null) : false,
                _ => null,
            };
            if (join is { } j) count = Put(changes, count, group, j);
            offset += length;
        }
        return count;
    }

    private static int Put(Span<GroupChange> changes, int index, ulong group, bool join)
    {
        if (index >= changes.Length) return index;
        changes[index] = new GroupChange(group, join);
        return index + 1;
    }
}
