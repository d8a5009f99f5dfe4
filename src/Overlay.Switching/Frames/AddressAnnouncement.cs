using System.Buffers.Binary;

namespace Overlay.Switching.Frames;

/// <summary>
/// The broadcast a switch sends in its host's name when another switch has lost the way to that host: a RARP request
/// (RFC 903) from the host's address, as a hypervisor announces a guest that moved. Every switch learns the address
/// again from the flood, along the links there are now; hosts have no use for RARP and ignore it.
/// </summary>
internal static class AddressAnnouncement
{
    /// <summary>Length of the frame (padded to Ethernet's minimum).</summary>
    public const int FrameLength = 60;

    /// <summary>RARP's EtherType.</summary>
    public const ushort EtherTypeRarp = 0x8035;

    /// <summary>Writes the announcement of <paramref name="mac"/> into <paramref name="frame"/>; returns its length.</summary>
    public static int Write(Span<byte> frame, ulong mac)
    {
        frame = frame[..FrameLength];
        EthernetFrame.WriteHeader(frame, EthernetFrame.Broadcast, mac, EtherTypeRarp);
        var rarp = frame[EthernetFrame.HeaderLength..];
        BinaryPrimitives.WriteUInt16BigEndian(rarp, 1);                                  // hardware: Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(rarp[2..], EthernetFrame.EtherTypeIPv4);   // protocol: IPv4
        rarp[4] = 6;                                                                     // hardware address length
        rarp[5] = 4;                                                                     // protocol address length
        BinaryPrimitives.WriteUInt16BigEndian(rarp[6..], 3);                             // request reverse
        EthernetFrame.WriteMac(rarp[8..], mac);                                          // sender: the host (its IP unknown: 0)
        EthernetFrame.WriteMac(rarp[18..], mac);                                         // target: the host
        return FrameLength;
    }
}
