using System.Buffers.Binary;
using Overlay.Switching.Frames;

namespace Overlay.Tap.Offload;

/// <summary>
/// Finishes what the host's stack left to the device when the TAP offers checksum and segmentation offload: the
/// checksum of a packet that carries only the pseudo-header's part of it, and TCP segments up to 64 KiB (TSO) cut into
/// frames the size the stack would have sent (gso_size of payload each), with their IP and TCP headers and checksums
/// rewritten as RFC 793/791/8200 want them. One read of the device then brings dozens of frames.
/// </summary>
internal static class FrameOffload
{
    private const byte TcpFin = 0x01, TcpPsh = 0x08, TcpCwr = 0x80;

    /// <summary>
    /// Hands the frames of one packet read from the device to <paramref name="sink"/>, finishing them first. A TSO packet
    /// is cut where it lies: each segment's headers are written in front of its payload, so the packet's bytes are
    /// overwritten as it goes (a frame handed on is valid until the sink returns, as always); <paramref name="scratch"/>
    /// keeps the original headers. Returns how many frames went, or -1 when the header asked for something this cannot
    /// finish or does not fit the packet (the packet is dropped, untouched).
    /// </summary>
    public static int Deliver(in VirtioNetHeader header, Span<byte> packet, Span<byte> scratch, IFrameSink sink, DeviceBatch? batch = null)
    {
        switch (header.GsoType & ~VirtioNetHeader.GsoEcn)
        {
            case VirtioNetHeader.GsoNone:
                if ((header.Flags & VirtioNetHeader.FlagNeedsChecksum) != 0 && !CompleteChecksum(packet, header.ChecksumStart, header.ChecksumOffset))
                    return -1;
                sink.OnFrame(packet, batch);
                return 1;
            case VirtioNetHeader.GsoTcpV4:
                return SegmentTcp(header, packet, scratch, sink, batch, v6: false);
            case VirtioNetHeader.GsoTcpV6:
                return SegmentTcp(header, packet, scratch, sink, batch, v6: true);
            default:
                return -1; // UDP fragmentation/segmentation offload is never offered to the kernel
        }
    }

    /// <summary>Writes the checksum the field at start+offset holds only the pseudo-header's part of.</summary>
    public static bool CompleteChecksum(Span<byte> packet, int start, int offset)
    {
        if (start < 14 || offset is not (6 or 16) || start + offset + 2 > packet.Length) return false;
        var value = (ushort)~InternetChecksum.Fold(InternetChecksum.Add(packet[start..]));
        if (value == 0 && offset == 6) value = 0xFFFF; // UDP: zero means "no checksum"
        InternetChecksum.Store(packet[(start + offset)..], value);
        return true;
    }

    private static int SegmentTcp(in VirtioNetHeader header, Span<byte> packet, Span<byte> scratch, IFrameSink sink, DeviceBatch? batch, bool v6)
    {
        var l3 = BinaryPrimitives.ReadUInt16BigEndian(packet[12..]) == 0x8100 ? 18 : 14;
        if (packet.Length < l3 + 2 || BinaryPrimitives.ReadUInt16BigEndian(packet[(l3 - 2)..]) != (v6 ? 0x86DD : 0x0800)) return -1;
        int l4 = header.ChecksumStart, mss = header.GsoSize;
        var ipHeader = v6 ? 40 : (packet[l3] & 0x0F) * 4;
        if (mss == 0 || ipHeader < 20 || l4 < l3 + ipHeader || l4 + 20 > packet.Length) return -1;
        var hlen = l4 + (packet[l4 + 12] >> 4) * 4;
        if (hlen < l4 + 20 || hlen > packet.Length || hlen > scratch.Length) return -1;

        var payload = packet.Length - hlen;
        var seq = BinaryPrimitives.ReadUInt32BigEndian(packet[(l4 + 4)..]);
        var id = v6 ? (ushort)0 : BinaryPrimitives.ReadUInt16BigEndian(packet[(l3 + 4)..]);
        var flags = packet[l4 + 13];
        var template = scratch[..hlen];
        packet[..hlen].CopyTo(template);
        var frames = 0;
        for (var offset = 0; offset < payload || frames == 0; offset += mss, frames++)
        {
            // Each segment is made where its payload lies: its headers go in front of it, over the end of the segment
            // before, which the sink has had. Only headers are copied, never a payload.
            var length = Math.Min(mss, payload - offset);
            var frame = packet.Slice(offset, hlen + length);
            if (offset > 0) template.CopyTo(frame);
            var ip = frame[l3..];
            if (v6)
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(ip.Length - 40));
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)ip.Length);
                BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(id + frames));
                InternetChecksum.SetIPv4HeaderChecksum(ip[..ipHeader]);
            }
            var tcp = frame[l4..];
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], seq + (uint)offset);
            var f = flags;
            if (offset + length < payload) f &= unchecked((byte)~(TcpFin | TcpPsh)); // only the last segment ends or pushes
            if (frames > 0) f &= unchecked((byte)~TcpCwr);                        // only the first one reports congestion
            tcp[13] = f;
            tcp[16] = 0;
            tcp[17] = 0;
            var sum = InternetChecksum.Add(tcp, InternetChecksum.PseudoHeader(ip, v6, 6, tcp.Length));
            InternetChecksum.Store(tcp[16..], (ushort)~InternetChecksum.Fold(sum));
            sink.OnFrame(frame, batch);
        }
        return frames;
    }
}
