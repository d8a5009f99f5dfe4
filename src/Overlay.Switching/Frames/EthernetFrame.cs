using System.Buffers.Binary;

namespace Overlay.Switching.Frames;

/// <summary>Reads the parts of an Ethernet II frame (IEEE 802.3) the switch decides on.</summary>
internal static class EthernetFrame
{
    /// <summary>Destination + source + EtherType.</summary>
    public const int HeaderLength = 14;

    /// <summary>An IEEE 802.1Q VLAN tag.</summary>
    public const int VlanTagLength = 4;

    /// <summary>
    /// The overlay's MTU unless configured otherwise (EdgeVPN's 1410): a frame of that payload, sealed with the link's
    /// headers, still fits a 1500-byte path. The default of every device, link and switch of a node.
    /// </summary>
    public const int OverlayMtu = 1410;

    /// <summary>IEEE 802.1Q VLAN tag protocol identifier.</summary>
    public const ushort EtherTypeVlan = 0x8100;

    /// <summary>IPv4.</summary>
    public const ushort EtherTypeIPv4 = 0x0800;

    /// <summary>ARP (RFC 826).</summary>
    public const ushort EtherTypeArp = 0x0806;

    /// <summary>IPv6.</summary>
    public const ushort EtherTypeIPv6 = 0x86DD;

    /// <summary>The broadcast address as a 48-bit key.</summary>
    public const ulong Broadcast = 0xFFFF_FFFF_FFFF;

    /// <summary>A 6-byte MAC as a 48-bit integer key.</summary>
    public static ulong MacKey(ReadOnlySpan<byte> mac) =>
        ((ulong)BinaryPrimitives.ReadUInt16BigEndian(mac) << 32) | BinaryPrimitives.ReadUInt32BigEndian(mac[2..]);

    /// <summary>Writes a 48-bit key as a 6-byte MAC.</summary>
    public static void WriteMac(Span<byte> to, ulong mac)
    {
        BinaryPrimitives.WriteUInt16BigEndian(to, (ushort)(mac >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(to[2..], (uint)mac);
    }

    /// <summary>Zeroes <paramref name="frame"/> and writes its Ethernet header.</summary>
    public static void WriteHeader(Span<byte> frame, ulong destination, ulong source, ushort etherType)
    {
        frame.Clear();
        WriteMac(frame, destination);
        WriteMac(frame[6..], source);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], etherType);
    }

    /// <summary>The destination MAC key.</summary>
    public static ulong Destination(ReadOnlySpan<byte> frame) => MacKey(frame);

    /// <summary>The source MAC key.</summary>
    public static ulong Source(ReadOnlySpan<byte> frame) => MacKey(frame[6..]);

    /// <summary>True for group addresses (I/G bit set): broadcast and multicast.</summary>
    public static bool IsGroup(ulong mac) => (mac & 0x0100_0000_0000) != 0;

    /// <summary>The EtherType and the offset of the payload, skipping one or two VLAN tags; false when truncated.</summary>
    public static bool TryGetPayload(ReadOnlySpan<byte> frame, out ushort etherType, out int offset)
    {
        offset = 12;
        etherType = 0;
        for (var tags = 0; tags < 3; tags++)
        {
            if (frame.Length < offset + 2) return false;
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[offset..]);
            offset += 2;
            if (etherType is not (EtherTypeVlan or 0x88A8)) return true;
            offset += 2; // the tag control information
        }
        return false;
    }
}
