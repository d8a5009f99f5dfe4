using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Overlay.Stack.Tcp;

/// <summary>TCP control bits (RFC 9293 §3.1).</summary>
[Flags]
internal enum TcpFlags : byte
{
    None = 0,
    Fin = 0x01,
    Syn = 0x02,
    Rst = 0x04,
    Psh = 0x08,
    Ack = 0x10,
    Urg = 0x20,
}

/// <summary>A connection's name: the remote address and port, and the local port (the local address follows from the family).</summary>
internal readonly record struct TcpKey(UInt128 Remote, ushort RemotePort, ushort LocalPort);

/// <summary>Sequence-number comparisons modulo 2^32 (RFC 9293 §3.4).</summary>
internal static class TcpSequence
{
    public static bool Lt(uint a, uint b) => (int)(a - b) < 0;

    public static bool Le(uint a, uint b) => (int)(a - b) <= 0;

    public static bool Gt(uint a, uint b) => (int)(a - b) > 0;

    public static bool Ge(uint a, uint b) => (int)(a - b) >= 0;

    public static uint Max(uint a, uint b) => Gt(a, b) ? a : b;
}

/// <summary>Up to four SACK blocks (RFC 2018 §3: at most four fit in the option space).</summary>
[InlineArray(8)]
internal struct SackEdges
{
    private uint _edge;
}

/// <summary>A parsed TCP segment: header fields and the options the stack uses (MSS, window scale, SACK), and the payload.</summary>
internal ref struct TcpSegment
{
    public ushort SourcePort;
    public ushort DestinationPort;
    public uint Seq;
    public uint Ack;
    public TcpFlags Flags;
    public ushort Window;
    public int Mss;          // 0: none
    public int WindowScale;  // -1: none
    public bool SackPermitted;
    public int SackCount;
    public SackEdges Sack;
    public ReadOnlySpan<byte> Payload;

    public readonly bool Syn => (Flags & TcpFlags.Syn) != 0;

    public readonly bool Fin => (Flags & TcpFlags.Fin) != 0;

    public readonly bool Rst => (Flags & TcpFlags.Rst) != 0;

    public readonly bool HasAck => (Flags & TcpFlags.Ack) != 0;

    /// <summary>Sequence space the segment occupies: its data, and one each for SYN and FIN.</summary>
    public readonly int SequenceLength => Payload.Length + (Syn ? 1 : 0) + (Fin ? 1 : 0);

    /// <summary>Parses a segment; false when its header or options are malformed (the checksum is the caller's).</summary>
    public static bool TryParse(ReadOnlySpan<byte> tcp, out TcpSegment segment)
    {
        segment = default;
        segment.WindowScale = -1;
        if (tcp.Length < 20) return false;
        var headerLength = (tcp[12] >> 4) * 4;
        if (headerLength < 20 || headerLength > tcp.Length) return false;
        segment.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(tcp);
        segment.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]);
        if (segment.SourcePort == 0 || segment.DestinationPort == 0) return false;
        segment.Seq = BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]);
        segment.Ack = BinaryPrimitives.ReadUInt32BigEndian(tcp[8..]);
        segment.Flags = (TcpFlags)(tcp[13] & 0x3f);
        segment.Window = BinaryPrimitives.ReadUInt16BigEndian(tcp[14..]);
        segment.Payload = tcp[headerLength..];
        // SYN with RST or FIN makes no sense in any state; such segments are scans or junk.
        if (segment.Syn && (segment.Rst || segment.Fin)) return false;
        var options = tcp[20..headerLength];
        while (options.Length > 0)
        {
            var kind = options[0];
            if (kind == 0) break;           // end of option list
            if (kind == 1)                  // no-operation
            {
                options = options[1..];
                continue;
            }
            if (options.Length < 2) return false;
            var length = options[1];
            if (length < 2 || length > options.Length) return false;
            var body = options[2..length];
            switch (kind)
            {
                case 2 when length == 4: // MSS (RFC 9293 §3.7.1), SYN only
                    if (segment.Syn) segment.Mss = BinaryPrimitives.ReadUInt16BigEndian(body);
                    break;
                case 3 when length == 3: // window scale (RFC 7323 §2.2), at most 14
                    if (segment.Syn) segment.WindowScale = Math.Min((int)body[0], 14);
                    break;
                case 4 when length == 2: // SACK permitted (RFC 2018 §2)
                    if (segment.Syn) segment.SackPermitted = true;
                    break;
                case 5 when (length - 2) % 8 == 0 && length >= 10: // SACK blocks (RFC 2018 §3)
                    var blocks = Math.Min((length - 2) / 8, 4);
                    for (var i = 0; i < blocks; i++)
                    {
                        segment.Sack[2 * i] = BinaryPrimitives.ReadUInt32BigEndian(body[(8 * i)..]);
                        segment.Sack[2 * i + 1] = BinaryPrimitives.ReadUInt32BigEndian(body[(8 * i + 4)..]);
                    }
                    segment.SackCount = blocks;
                    break;
                case 2 or 3 or 4 or 5:
                    return false; // a known option with the wrong length
            }
            options = options[length..];
        }
        return true;
    }

    /// <summary>Writes a 20-byte header (checksum zero) with a header length of <paramref name="headerLength"/>.</summary>
    public static void WriteHeader(Span<byte> tcp, ushort sourcePort, ushort destinationPort, uint seq, uint ack, TcpFlags flags, ushort window, int headerLength)
    {
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], seq);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], (flags & TcpFlags.Ack) != 0 ? ack : 0);
        tcp[12] = (byte)(headerLength / 4 << 4);
        tcp[13] = (byte)flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], window);
        tcp[16] = 0;
        tcp[17] = 0;
        tcp[18] = 0;
        tcp[19] = 0;
    }
}

/// <summary>TCP connection states (RFC 9293 §3.3.2); LISTEN is a listener, not a connection.</summary>
internal enum TcpState
{
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}
