using System.Buffers.Binary;

namespace Overlay.Switching.Frames;

/// <summary>
/// General membership queries a switch sends its own host, so that the host reports the groups it is in again before
/// their subscriptions age out: IGMPv3 (RFC 3376 §4.1) and MLDv2 (RFC 3810 §5.1). Hosts report only when they join
/// unless asked, and the overlay has no multicast router to ask them.
/// </summary>
internal static class MembershipQuery
{
    /// <summary>Length of the IGMP query frame (padded to Ethernet's minimum).</summary>
    public const int IgmpFrameLength = 60;

    /// <summary>Length of the MLD query frame.</summary>
    public const int MldFrameLength = 14 + 40 + 8 + 28;

    /// <summary>Robustness variable and query interval announced (RFC 3376 §8.1-8.2 defaults).</summary>
    private const byte Robustness = 2, QueryIntervalSeconds = 125;

    /// <summary>
    /// Writes an IGMPv3 general query from <paramref name="sourceMac"/> to 224.0.0.1 (IP source 0.0.0.0, as a snooping
    /// switch's proxy query, RFC 4541 §2.1.1); hosts answer within <paramref name="maxResponse"/> (0.1-12.7 s).
    /// </summary>
    public static int WriteIgmp(Span<byte> frame, ulong sourceMac, TimeSpan maxResponse)
    {
        var body = Ethernet(frame[..IgmpFrameLength], 0x0100_5E00_0001, sourceMac, EthernetFrame.EtherTypeIPv4);
        var ip = body.Slice(EthernetFrame.HeaderLength, 24);
        ip[0] = 0x46;                                      // version 4, 6 words: the Router Alert option follows
        ip[1] = 0xC0;                                      // internetwork control (RFC 3376 §4)
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], 24 + 12);
        ip[8] = 1;                                         // TTL 1
        ip[9] = 2;                                         // IGMP
        ip[16] = 224;                                      // to 224.0.0.1, all systems
        ip[19] = 1;
        ip[20] = 0x94;                                     // Router Alert (RFC 2113)
        ip[21] = 4;
        InternetChecksum.SetIPv4HeaderChecksum(ip);
        var igmp = body.Slice(EthernetFrame.HeaderLength + 24, 12);
        igmp[0] = 0x11;                                    // membership query; group 0.0.0.0: general
        igmp[1] = (byte)Math.Clamp((int)(maxResponse.TotalMilliseconds / 100), 1, 127); // tenths of a second, exact below 128
        igmp[8] = Robustness;
        igmp[9] = QueryIntervalSeconds;
        InternetChecksum.Store(igmp[2..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(igmp)));
        return IgmpFrameLength;
    }

    /// <summary>
    /// Writes an MLDv2 general query to ff02::1 from the link-local address derived from <paramref name="sourceMac"/>
    /// (hosts ignore queries from any other kind of source, RFC 3810 §5.1.14); hosts answer within
    /// <paramref name="maxResponse"/> (up to 32.7 s).
    /// </summary>
    public static int WriteMld(Span<byte> frame, ulong sourceMac, TimeSpan maxResponse)
    {
        var body = Ethernet(frame[..MldFrameLength], 0x3333_0000_0001, sourceMac, EthernetFrame.EtherTypeIPv6);
        var ip = body.Slice(EthernetFrame.HeaderLength, 40);
        ip[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 8 + 28);
        ip[6] = 0;                                         // a hop-by-hop header follows
        ip[7] = 1;                                         // hop limit 1
        ip[8] = 0xfe;                                      // fe80::/64 with the modified EUI-64 of the MAC
        ip[9] = 0x80;
        ip[16] = (byte)((sourceMac >> 40) ^ 0x02);
        ip[17] = (byte)(sourceMac >> 32);
        ip[18] = (byte)(sourceMac >> 24);
        ip[19] = 0xff;
        ip[20] = 0xfe;
        ip[21] = (byte)(sourceMac >> 16);
        ip[22] = (byte)(sourceMac >> 8);
        ip[23] = (byte)sourceMac;
        ip[24] = 0xff;                                     // to ff02::1, all nodes
        ip[25] = 0x02;
        ip[39] = 1;
        var options = body.Slice(EthernetFrame.HeaderLength + 40, 8);
        options[0] = 58;                                   // then ICMPv6
        options[2] = 5;                                    // Router Alert (RFC 2711), value 0: MLD
        options[3] = 2;
        options[6] = 1;                                    // PadN, no data
        var mld = body.Slice(EthernetFrame.HeaderLength + 48, 28);
        mld[0] = 130;                                      // multicast listener query; address ::: general
        BinaryPrimitives.WriteUInt16BigEndian(mld[4..], (ushort)Math.Clamp((int)maxResponse.TotalMilliseconds, 1, 32767)); // ms, exact below 32768
        mld[24] = Robustness;
        mld[25] = QueryIntervalSeconds;
        // ICMPv6 checksum over the pseudo-header (source, destination, length, next header) and the message.
        var sum = InternetChecksum.Add(mld, InternetChecksum.PseudoHeader(ip, v6: true, protocol: 58, mld.Length));
        InternetChecksum.Store(mld[2..], (ushort)~InternetChecksum.Fold(sum));
        return MldFrameLength;
    }

    /// <summary>Zeroes <paramref name="frame"/> and writes its Ethernet header.</summary>
    private static Span<byte> Ethernet(Span<byte> frame, ulong destination, ulong source, ushort etherType)
    {
        EthernetFrame.WriteHeader(frame, destination, source, etherType);
        return frame;
    }
}
