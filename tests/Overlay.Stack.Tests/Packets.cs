using System.Buffers.Binary;
using System.Net;

namespace Overlay.Stack.Tests;

/// <summary>Hand-made frames for hostile-input tests, and checksum repair for mutated ones (RFC 1071, written plainly).</summary>
internal static class Packets
{
    public static ushort Checksum(ReadOnlySpan<byte> data, uint sum = 0)
    {
        for (var i = 0; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if ((data.Length & 1) != 0) sum += (uint)data[^1] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    private static uint PseudoSum(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, byte protocol, int length)
    {
        uint sum = 0;
        for (var i = 0; i < source.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(source[i..]);
        for (var i = 0; i < destination.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(destination[i..]);
        return sum + protocol + (uint)length;
    }

    /// <summary>An Ethernet + IPv4 + TCP frame with correct checksums.</summary>
    public static byte[] Tcp4(ulong sourceMac, ulong destinationMac, IPAddress source, IPAddress destination, ushort sourcePort, ushort destinationPort,
        uint seq, uint ack, byte flags, ushort window = 65535)
    {
        var frame = new byte[14 + 20 + 20];
        WriteMac(frame, destinationMac);
        WriteMac(frame.AsSpan(6), sourceMac);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0800);
        var ip = frame.AsSpan(14, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], 40);
        ip[8] = 64;
        ip[9] = 6;
        source.TryWriteBytes(ip[12..], out _);
        destination.TryWriteBytes(ip[16..], out _);
        var tcp = frame.AsSpan(34, 20);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], seq);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], ack);
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], window);
        FixChecksums(frame);
        return frame;
    }

    /// <summary>An ICMP echo request (RFC 792) with correct checksums.</summary>
    public static byte[] Echo4(ulong sourceMac, ulong destinationMac, IPAddress source, IPAddress destination)
    {
        var frame = new byte[14 + 20 + 8 + 16];
        WriteMac(frame, destinationMac);
        WriteMac(frame.AsSpan(6), sourceMac);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0800);
        var ip = frame.AsSpan(14, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], 44);
        ip[8] = 64;
        ip[9] = 1;
        source.TryWriteBytes(ip[12..], out _);
        destination.TryWriteBytes(ip[16..], out _);
        frame[34] = 8;
        FixChecksums(frame);
        return frame;
    }

    /// <summary>Recomputes the IPv4 header checksum and the TCP / UDP / ICMP checksum where the headers are whole enough to find them.</summary>
    public static void FixChecksums(Span<byte> frame)
    {
        if (frame.Length < 14) return;
        var type = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        var ip = frame[14..];
        if (type == 0x0800 && ip.Length >= 20)
        {
            var headerLength = (ip[0] & 0xf) * 4;
            if (headerLength < 20 || headerLength > ip.Length) return;
            ip[10] = ip[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Checksum(ip[..headerLength]));
            var total = Math.Min((int)BinaryPrimitives.ReadUInt16BigEndian(ip[2..]), ip.Length);
            if (total <= headerLength) return;
            FixL4(ip[headerLength..total], ip[9], ip.Slice(12, 4), ip.Slice(16, 4));
        }
        else if (type == 0x86DD && ip.Length >= 40)
        {
            var total = Math.Min(BinaryPrimitives.ReadUInt16BigEndian(ip[4..]), ip.Length - 40);
            FixL4(ip.Slice(40, total), ip[6], ip.Slice(8, 16), ip.Slice(24, 16));
        }
    }

    private static void FixL4(Span<byte> l4, byte protocol, ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination)
    {
        var offset = protocol switch { 6 => 16, 17 => 6, 1 or 58 => 2, _ => -1 };
        if (offset < 0 || l4.Length < offset + 2) return;
        l4[offset] = l4[offset + 1] = 0;
        var sum = protocol == 1 ? Checksum(l4) : Checksum(l4, PseudoSum(source, destination, protocol, l4.Length));
        BinaryPrimitives.WriteUInt16BigEndian(l4[offset..], sum);
    }

    public static void WriteMac(Span<byte> span, ulong mac)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)(mac >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(span[2..], (uint)mac);
    }
}
