using System.Buffers.Binary;

namespace Overlay.Nat.Turn;

/// <summary>TURN ChannelData framing (RFC 8656 §12.4): channel number (0x4000–0x4FFF), length, data.</summary>
internal static class ChannelData
{
    /// <summary>Header size.</summary>
    public const int HeaderSize = 4;

    /// <summary>RFC 8656 §12: the channel number range.</summary>
    public const ushort FirstChannel = 0x4000, LastChannel = 0x4FFF;

    /// <summary>Writes the header in front of a <paramref name="payloadLength"/>-byte payload already at offset 4.</summary>
    public static void WriteHeader(Span<byte> buffer, ushort channel, int payloadLength)
    {
        BinaryPrimitives.WriteUInt16BigEndian(buffer, channel);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], (ushort)payloadLength);
    }

    /// <summary>Splits a ChannelData message; false when malformed (bad channel, length beyond the datagram).</summary>
    public static bool TryRead(ReadOnlySpan<byte> datagram, out ushort channel, out ReadOnlySpan<byte> payload)
    {
        channel = 0;
        payload = default;
        if (datagram.Length < HeaderSize) return false;
        channel = BinaryPrimitives.ReadUInt16BigEndian(datagram);
        int length = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        if (channel < FirstChannel || channel > LastChannel || length > datagram.Length - HeaderSize) return false;
        payload = datagram.Slice(HeaderSize, length);
        return true;
    }
}
