using System.Buffers.Binary;
using Overlay.Switching.Frames;

namespace Overlay.Tap.Offload;

/// <summary>
/// Merges consecutive TCP segments of one stream, as a burst from a link brings them, into one packet up to 64 KiB that
/// the TAP takes in a single write with a virtio_net_hdr asking for segmentation (GSO): the host's stack then handles
/// one packet where it would have handled dozens, as GRO does for a real NIC. Only what GRO itself would merge is
/// merged: same Ethernet, IP and TCP headers but for length, ID, sequence and checksum; contiguous sequence numbers;
/// equal payload sizes (the last may be shorter, and a shorter or pushed segment ends the run); plain ACK segments with
/// no SYN, FIN, RST, URG, ECE or CWR. The merged packet's checksum is left to the host (NEEDS_CSUM); the frames come
/// from an authenticated link, so their integrity is the link's, not the checksum's.
/// </summary>
internal sealed class TcpCoalescer
{
    public const int MaxSegments = 64;
    private const int MaxPacket = 65535 - 60; // the IPv4 total length, with room for headers
    private const byte TcpAck = 0x10, TcpPsh = 0x08, TcpFlagsThatEndGro = 0x01 | 0x02 | 0x04 | 0x20 | 0x40 | 0x80;

    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + 65536, pinned: true);
    private int _length, _l4, _hlen, _mss;
    private bool _v6, _closed;
    private uint _nextSeq;

    /// <summary>The device whose frames are held, if any.</summary>
    public object? Owner { get; set; }

    /// <summary>Segments held.</summary>
    public int Segments { get; private set; }

    /// <summary>Bytes of the frames held, as they came.</summary>
    public long FrameBytes { get; private set; }

    /// <summary>Starts a run with <paramref name="frame"/>; false when it is not a segment worth holding (write it as it is).</summary>
    public bool TryStart(ReadOnlySpan<byte> frame)
    {
        if (Segments != 0 || !Parse(frame, out var l4, out var hlen, out var v6) || (frame[l4 + 13] & TcpPsh) != 0) return false;
        frame.CopyTo(_buffer.AsSpan(VirtioNetHeader.Size));
        _length = frame.Length;
        _l4 = l4;
        _hlen = hlen;
        _v6 = v6;
        _mss = frame.Length - hlen;
        _nextSeq = BinaryPrimitives.ReadUInt32BigEndian(frame[(l4 + 4)..]) + (uint)_mss;
        _closed = false;
        Segments = 1;
        FrameBytes = frame.Length;
        return true;
    }

    /// <summary>Adds <paramref name="frame"/> to the run when it continues it; false when it does not.</summary>
    public bool TryAppend(ReadOnlySpan<byte> frame)
    {
        if (Segments == 0 || _closed || Segments >= MaxSegments || frame.Length <= _hlen || frame.Length - _hlen > _mss
            || _length + frame.Length - _hlen > MaxPacket || !Parse(frame, out var l4, out var hlen, out var v6)
            || l4 != _l4 || hlen != _hlen || v6 != _v6
            || BinaryPrimitives.ReadUInt32BigEndian(frame[(l4 + 4)..]) != _nextSeq
            || !SameHeaders(frame))
            return false;
        var payload = frame.Length - _hlen;
        frame[_hlen..].CopyTo(_buffer.AsSpan(VirtioNetHeader.Size + _length));
        _length += payload;
        _nextSeq += (uint)payload;
        Segments++;
        FrameBytes += frame.Length;
        if ((frame[l4 + 13] & TcpPsh) != 0)
        {
            _buffer[VirtioNetHeader.Size + _l4 + 13] |= TcpPsh;
            _closed = true;
        }
        if (payload < _mss) _closed = true;
        return true;
    }

    /// <summary>
    /// The held run as the device takes it (virtio_net_hdr and packet), headers rewritten for its whole length; the
    /// coalescer is empty afterwards. A single held segment goes as it came, with an empty header.
    /// </summary>
    public ReadOnlySpan<byte> Finish()
    {
        var packet = _buffer.AsSpan(VirtioNetHeader.Size, _length);
        var header = default(VirtioNetHeader);
        if (Segments > 1)
        {
            var ip = packet[14..];
            if (_v6)
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(ip.Length - 40));
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)ip.Length);
                InternetChecksum.SetIPv4HeaderChecksum(ip[..20]);
            }
            // NEEDS_CSUM: the field holds the pseudo-header's sum, the host adds the rest (or trusts it, delivering locally).
            InternetChecksum.Store(packet[(_l4 + 16)..], InternetChecksum.Fold(InternetChecksum.PseudoHeader(ip, _v6, 6, _length - _l4)));
            header = new VirtioNetHeader
            {
                Flags = VirtioNetHeader.FlagNeedsChecksum,
                GsoType = _v6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4,
                HeaderLength = (ushort)_hlen,
                GsoSize = (ushort)_mss,
                ChecksumStart = (ushort)_l4,
                ChecksumOffset = 16,
            };
        }
        header.Write(_buffer);
        var result = _buffer.AsSpan(0, VirtioNetHeader.Size + _length);
        Segments = 0;
        FrameBytes = 0;
        Owner = null;
        return result;
    }

    /// <summary>An untagged IPv4 (no options, not a fragment) or IPv6 (TCP next) frame with a TCP ACK segment carrying data.</summary>
    private static bool Parse(ReadOnlySpan<byte> f, out int l4, out int hlen, out bool v6)
    {
        l4 = hlen = 0;
        v6 = false;
        if (f.Length < 14 + 40 + 20) return false;
        switch (BinaryPrimitives.ReadUInt16BigEndian(f[12..]))
        {
            case 0x0800:
                if (f[14] != 0x45 || f[23] != 6 || (BinaryPrimitives.ReadUInt16BigEndian(f[20..]) & 0x3FFF) != 0
                    || BinaryPrimitives.ReadUInt16BigEndian(f[16..]) != f.Length - 14) return false;
                l4 = 34;
                break;
            case 0x86DD:
                if (f[14] >> 4 != 6 || f[20] != 6 || BinaryPrimitives.ReadUInt16BigEndian(f[18..]) != f.Length - 54) return false;
                l4 = 54;
                v6 = true;
                break;
            default:
                return false;
        }
        hlen = l4 + (f[l4 + 12] >> 4) * 4;
        var flags = f[l4 + 13];
        return hlen >= l4 + 20 && hlen < f.Length && (flags & TcpAck) != 0 && (flags & TcpFlagsThatEndGro) == 0;
    }

    /// <summary>Everything but lengths, IPv4 ID and checksums, sequence number and PSH equals the held run's first segment.</summary>
    private bool SameHeaders(ReadOnlySpan<byte> f)
    {
        ReadOnlySpan<byte> held = _buffer.AsSpan(VirtioNetHeader.Size, _hlen);
        if (!f[..14].SequenceEqual(held[..14])) return false;
        var sameIp = _v6
            ? f.Slice(14, 4).SequenceEqual(held.Slice(14, 4)) && f.Slice(20, 34).SequenceEqual(held.Slice(20, 34))
            : f.Slice(14, 2).SequenceEqual(held.Slice(14, 2)) && f.Slice(20, 4).SequenceEqual(held.Slice(20, 4))
              && f.Slice(26, 8).SequenceEqual(held.Slice(26, 8));
        if (!sameIp) return false;
        var l4 = _l4;
        return f.Slice(l4, 4).SequenceEqual(held.Slice(l4, 4))                       // ports
            && f.Slice(l4 + 8, 5).SequenceEqual(held.Slice(l4 + 8, 5))               // ack, data offset
            && ((f[l4 + 13] ^ held[l4 + 13]) & ~TcpPsh) == 0                          // flags but PSH
            && f.Slice(l4 + 14, 2).SequenceEqual(held.Slice(l4 + 14, 2))             // window
            && f.Slice(l4 + 18, _hlen - l4 - 18).SequenceEqual(held[(l4 + 18)..]);   // urgent pointer, options
    }
}
