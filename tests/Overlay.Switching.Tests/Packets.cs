using System.Buffers.Binary;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

/// <summary>Builds the IGMP, MLD and UDP frames the multicast tests send.</summary>
internal static class Packets
{
    public static byte[] IgmpV2Report(ulong sourceMac, uint group) => Igmp(sourceMac, group, type: 0x16, destination: group);

    public static byte[] IgmpV2Leave(ulong sourceMac, uint group) => Igmp(sourceMac, group, type: 0x17, destination: 0xE0000002);

    /// <summary>An IGMPv3 report (RFC 3376 §4.2) with one record.</summary>
    public static byte[] IgmpV3Report(ulong sourceMac, uint group, byte recordType, int sources = 0)
    {
        var igmpLength = 8 + 8 + 4 * sources;
        var f = Ipv4(sourceMac, 0xE0000016, protocol: 2, igmpLength, out var igmp);
        igmp[0] = 0x22;
        BinaryPrimitives.WriteUInt16BigEndian(igmp[6..], 1);
        igmp[8] = recordType;
        BinaryPrimitives.WriteUInt16BigEndian(igmp[10..], (ushort)sources);
        BinaryPrimitives.WriteUInt32BigEndian(igmp[12..], group);
        return f;
    }

    /// <summary>An MLDv2 report (RFC 3810 §5.2) behind a hop-by-hop router alert.</summary>
    public static byte[] MldV2Report(ulong sourceMac, byte[] group, byte recordType)
    {
        var f = new byte[14 + 40 + 8 + 8 + 20];
        EthernetFrame.WriteMac(f, 0x3333_0000_0016);
        EthernetFrame.WriteMac(f.AsSpan(6), sourceMac);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), EthernetFrame.EtherTypeIPv6);
        var ip = f.AsSpan(14);
        ip[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 8 + 8 + 20);
        ip[6] = 0; // hop-by-hop
        ip[7] = 1;
        var hbh = ip[40..];
        hbh[0] = 58; // ICMPv6
        hbh[1] = 0;
        hbh[2] = 5; hbh[3] = 2; // router alert option
        var mld = ip[48..];
        mld[0] = 143;
        BinaryPrimitives.WriteUInt16BigEndian(mld[6..], 1);
        mld[8] = recordType;
        group.CopyTo(mld[12..]);
        return f;
    }

    public static byte[] UdpMulticast(ulong sourceMac, uint group, int tag)
    {
        var f = Ipv4(sourceMac, group, protocol: 17, 8 + 4, out var udp);
        BinaryPrimitives.WriteInt32BigEndian(udp[8..], tag);
        return f;
    }

    public static bool IsUdpMulticastTag(byte[] f, int tag) =>
        f.Length >= 14 + 20 + 12 && f[14 + 9] == 17 && BinaryPrimitives.ReadInt32BigEndian(f.AsSpan(14 + 28)) == tag;

    private static byte[] Igmp(ulong sourceMac, uint group, byte type, uint destination)
    {
        var f = Ipv4(sourceMac, destination, protocol: 2, 8, out var igmp);
        igmp[0] = type;
        BinaryPrimitives.WriteUInt32BigEndian(igmp[4..], group);
        return f;
    }

    private static byte[] Ipv4(ulong sourceMac, uint destination, byte protocol, int payload, out Span<byte> body)
    {
        var f = new byte[Math.Max(60, 14 + 20 + payload)];
        EthernetFrame.WriteMac(f, MulticastReport.IPv4GroupMac(destination));
        EthernetFrame.WriteMac(f.AsSpan(6), sourceMac);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), EthernetFrame.EtherTypeIPv4);
        var ip = f.AsSpan(14);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + payload));
        ip[8] = 1;
        ip[9] = protocol;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], 0x0A000001);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], destination);
        body = f.AsSpan(14 + 20, payload);
        return f;
    }
}
