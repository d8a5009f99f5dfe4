using System.Buffers.Binary;
using NUnit.Framework;
using Overlay.Switching.Frames;
using Overlay.Tap.Offload;

namespace Overlay.Tap.Tests.Offload;

/// <summary>
/// The device's half of checksum and TCP segmentation offload, checked against a plain RFC 1071 reference: what the
/// host hands over in 64 KiB is cut into exactly the frames its stack would have sent, and merging those frames again
/// gives back the packet (so merge then cut is the identity on a stream's frames).
/// </summary>
public class OffloadTests
{
    private const int Mss = 1358;

    private sealed class Frames : IFrameSink
    {
        public List<byte[]> List { get; } = [];
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => List.Add(frame.ToArray());
    }

    [Test]
    public void The_checksum_matches_rfc_1071_for_any_length_and_alignment()
    {
        // RFC 1071 §3's example: 0001 f203 f4f5 f6f7 sums to ddf2.
        byte[] example = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Span<byte> field = stackalloc byte[2];
        InternetChecksum.Store(field, InternetChecksum.Fold(InternetChecksum.Add(example)));
        Assert.That(field.ToArray(), Is.EqualTo(new byte[] { 0xdd, 0xf2 }));

        var random = new Random(5);
        for (var n = 0; n < 2000; n++)
        {
            var data = new byte[random.Next(0, 1600)];
            random.NextBytes(data);
            InternetChecksum.Store(field, InternetChecksum.Fold(InternetChecksum.Add(data)));
            Assert.That(BinaryPrimitives.ReadUInt16BigEndian(field), Is.EqualTo(ReferenceSum(data)), $"length {data.Length}");
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void A_tso_packet_is_cut_into_the_frames_the_stack_would_have_sent(bool v6)
    {
        var payload = Payload(45_000);
        var (header, packet) = SuperPacket(v6, payload, seq: 0xFFFF_F000, flags: 0x18 | 0x80 | 0x01); // ACK PSH CWR FIN: sequence wraps
        var frames = new Frames();
        var delivered = FrameOffload.Deliver(header, packet, new byte[70_000], frames);

        var expected = (payload.Length + Mss - 1) / Mss;
        Assert.That(delivered, Is.EqualTo(expected));
        Assert.That(frames.List, Has.Count.EqualTo(expected));
        var l4 = v6 ? 54 : 34;
        var rebuilt = new List<byte>();
        for (var i = 0; i < frames.List.Count; i++)
        {
            var f = frames.List[i];
            var last = i == frames.List.Count - 1;
            Assert.That(f.Length - l4 - 32, Is.EqualTo(last ? payload.Length - Mss * i : Mss), $"segment {i} carries one MSS");
            if (v6)
            {
                Assert.That(BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(18)), Is.EqualTo(f.Length - 54), "IPv6 payload length");
            }
            else
            {
                Assert.That(BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(16)), Is.EqualTo(f.Length - 14), "IPv4 total length");
                Assert.That(BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(18)), Is.EqualTo((ushort)(0x1234 + i)), "IPv4 IDs count up");
                Assert.That(ReferenceSum(f.AsSpan(14, 20)), Is.EqualTo(0xFFFF), "IPv4 header checksum verifies");
            }
            Assert.That(TcpChecksumVerifies(f, v6), Is.True, $"TCP checksum of segment {i}");
            Assert.That(BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(l4 + 4)), Is.EqualTo(unchecked(0xFFFF_F000u + (uint)(Mss * i))), "sequence");
            var flags = f[l4 + 13];
            Assert.That((flags & 0x01) != 0, Is.EqualTo(last), "FIN on the last segment only");
            Assert.That((flags & 0x08) != 0, Is.EqualTo(last), "PSH on the last segment only");
            Assert.That((flags & 0x80) != 0, Is.EqualTo(i == 0), "CWR on the first segment only");
            Assert.That(f.AsSpan(l4 + 20, 12).ToArray(), Is.EqualTo(packet.AsSpan(l4 + 20, 12).ToArray()), "options kept");
            rebuilt.AddRange(f.AsSpan(l4 + 32).ToArray());
        }
        Assert.That(rebuilt, Is.EqualTo(payload), "the payload, in order, nothing lost or added");
    }

    [TestCase(false, 8)]
    [TestCase(true, 8)]
    [TestCase(false, 1)]
    public void A_tso_packet_is_cut_where_it_lies_even_when_its_segments_are_smaller_than_their_headers(bool v6, int mss)
    {
        // Each segment's headers are written in front of its payload, over the end of the segments before it: with
        // payloads shorter than the headers they cover several earlier segments, never a later one.
        var payload = Payload(700);
        var (header, packet) = SuperPacket(v6, payload, seq: 42, flags: 0x10);
        header = header with { GsoSize = (ushort)mss };
        var frames = new Frames();
        Assert.That(FrameOffload.Deliver(header, packet, new byte[200], frames), Is.EqualTo((payload.Length + mss - 1) / mss));
        var l4 = v6 ? 54 : 34;
        var rebuilt = new List<byte>();
        for (var i = 0; i < frames.List.Count; i++)
        {
            var f = frames.List[i];
            Assert.That(BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(l4 + 4)), Is.EqualTo(42u + (uint)(mss * i)), "sequence");
            Assert.That(TcpChecksumVerifies(f, v6), Is.True, $"TCP checksum of segment {i}");
            Assert.That(f.AsSpan(0, 14).ToArray(), Is.EqualTo(frames.List[0].AsSpan(0, 14).ToArray()), "Ethernet header kept");
            rebuilt.AddRange(f.AsSpan(l4 + 32).ToArray());
        }
        Assert.That(rebuilt, Is.EqualTo(payload), "the payload, in order, nothing lost or overwritten");
    }

    [Test]
    public void A_partial_checksum_is_completed()
    {
        var (_, packet) = SuperPacket(v6: false, Payload(300), seq: 1, flags: 0x18);
        var expected = (byte[])packet.Clone();
        SetTcpChecksum(expected, v6: false);
        var header = new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsChecksum, ChecksumStart = 34, ChecksumOffset = 16 };
        var frames = new Frames();
        Assert.That(FrameOffload.Deliver(header, packet, new byte[2000], frames), Is.EqualTo(1));
        Assert.That(frames.List.Single(), Is.EqualTo(expected));
    }

    [Test]
    public void Headers_that_do_not_fit_the_packet_are_refused()
    {
        var (header, packet) = SuperPacket(v6: false, Payload(5000), seq: 1, flags: 0x10);
        var frames = new Frames();
        Assert.That(FrameOffload.Deliver(header with { ChecksumStart = 60_000 }, packet, new byte[70_000], frames), Is.EqualTo(-1));
        Assert.That(FrameOffload.Deliver(header with { GsoSize = 0 }, packet, new byte[70_000], frames), Is.EqualTo(-1));
        Assert.That(FrameOffload.Deliver(header with { GsoType = VirtioNetHeader.GsoUdp }, packet, new byte[70_000], frames), Is.EqualTo(-1));
        Assert.That(FrameOffload.Deliver(header with { GsoType = VirtioNetHeader.GsoTcpV6 }, packet, new byte[70_000], frames), Is.EqualTo(-1));
        Assert.That(FrameOffload.Deliver(header, packet.AsSpan(0, 40), new byte[70_000], frames), Is.EqualTo(-1));
        Assert.That(frames.List, Is.Empty);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Merging_a_streams_frames_and_cutting_them_again_gives_the_same_frames(bool v6)
    {
        var (header, packet) = SuperPacket(v6, Payload(30_000), seq: 777, flags: 0x18);
        var frames = new Frames();
        FrameOffload.Deliver(header, packet, new byte[70_000], frames);

        var coalescer = new TcpCoalescer();
        Assert.That(coalescer.TryStart(frames.List[0]), Is.True);
        foreach (var f in frames.List.Skip(1)) Assert.That(coalescer.TryAppend(f), Is.True);
        Assert.That(coalescer.Segments, Is.EqualTo(frames.List.Count));
        var merged = coalescer.Finish().ToArray();
        var mergedHeader = VirtioNetHeader.Read(merged);
        Assert.That(mergedHeader.GsoType, Is.EqualTo(v6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4));
        Assert.That(mergedHeader.GsoSize, Is.EqualTo(Mss));
        Assert.That(coalescer.Segments, Is.Zero, "empty after Finish");

        var again = new Frames();
        FrameOffload.Deliver(mergedHeader, merged.AsSpan(VirtioNetHeader.Size), new byte[70_000], again);
        Assert.That(again.List, Is.EqualTo(frames.List));
    }

    [Test]
    public void Only_what_gro_would_merge_is_merged()
    {
        var (header, packet) = SuperPacket(false, Payload(10 * Mss), seq: 100, flags: 0x10);
        var frames = new Frames();
        FrameOffload.Deliver(header, packet, new byte[70_000], frames);
        var f = frames.List;

        var c = new TcpCoalescer();
        Assert.That(c.TryStart(f[0]), Is.True);
        Assert.That(c.TryAppend(f[2]), Is.False, "a gap in the sequence");
        Assert.That(c.TryAppend(With(f[1], 36, 0x99)), Is.False, "another port");
        Assert.That(c.TryAppend(With(f[1], 22, 1)), Is.False, "another TTL");
        Assert.That(c.TryAppend(With(f[1], 34 + 13, 0x12)), Is.False, "SYN");
        Assert.That(c.TryAppend(With(f[1], 34 + 8, 0xEE)), Is.False, "another ACK number");
        Assert.That(c.TryAppend(With(f[1], 20, 0x20)), Is.False, "an IPv4 fragment");
        Assert.That(c.TryAppend(f[1]), Is.True);
        Assert.That(c.TryAppend(f[2][..^10]), Is.False, "a shorter segment whose IP length disagrees");
        Assert.That(c.TryAppend(With(f[2], 34 + 13, 0x18)), Is.True, "PSH may end a run");
        Assert.That(c.TryAppend(f[3]), Is.False, "nothing after PSH");
        Assert.That(c.Segments, Is.EqualTo(3));

        var pushed = new TcpCoalescer();
        Assert.That(pushed.TryStart(With(f[0], 34 + 13, 0x18)), Is.False, "a pushed segment alone is not worth holding");
        Assert.That(pushed.TryStart(f[0][..60]), Is.False, "not a whole segment");
    }

    private static byte[] With(byte[] frame, int offset, byte value)
    {
        var copy = (byte[])frame.Clone();
        copy[offset] = value;
        return copy;
    }

    private static byte[] Payload(int length)
    {
        var payload = new byte[length];
        new Random(length).NextBytes(payload);
        return payload;
    }

    /// <summary>An Ethernet/IP/TCP packet (TCP with 12 bytes of timestamp options) as the kernel hands it over with TSO.</summary>
    private static (VirtioNetHeader Header, byte[] Packet) SuperPacket(bool v6, byte[] payload, uint seq, byte flags)
    {
        var l4 = v6 ? 54 : 34;
        var packet = new byte[l4 + 32 + payload.Length];
        byte[] macs = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        macs.CopyTo(packet, 0);
        if (v6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(12), 0x86DD);
            packet[14] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(18), (ushort)(packet.Length - 54 > 0xFFFF ? 0 : packet.Length - 54));
            packet[20] = 6;
            packet[21] = 64;
            packet[22] = 0xfd; packet[23] = 0x77; packet[37] = 1;
            packet[38] = 0xfd; packet[39] = 0x77; packet[53] = 2;
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(12), 0x0800);
            packet[14] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(16), (ushort)(packet.Length - 14));
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(18), 0x1234);
            packet[20] = 0x40; // DF
            packet[22] = 64;
            packet[23] = 6;
            byte[] addresses = [10, 77, 0, 1, 10, 77, 0, 2];
            addresses.CopyTo(packet, 26);
            InternetChecksum.SetIPv4HeaderChecksum(packet.AsSpan(14, 20));
        }
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(l4), 40000);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(l4 + 2), 5201);
        BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(l4 + 4), seq);
        BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(l4 + 8), 0xABCDEF01);
        packet[l4 + 12] = 8 << 4;
        packet[l4 + 13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(l4 + 14), 502);
        byte[] options = [1, 1, 8, 10, 0, 0, 0, 42, 0, 0, 0, 7];
        options.CopyTo(packet, l4 + 20);
        payload.CopyTo(packet, l4 + 32);
        // As the kernel leaves it: the pseudo-header's sum (for the whole length) in the checksum field.
        var ip = packet.AsSpan(14);
        InternetChecksum.Store(packet.AsSpan(l4 + 16), InternetChecksum.Fold(InternetChecksum.PseudoHeader(ip, v6, 6, packet.Length - l4)));
        var header = new VirtioNetHeader
        {
            Flags = VirtioNetHeader.FlagNeedsChecksum,
            GsoType = v6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4,
            HeaderLength = (ushort)(l4 + 32),
            GsoSize = Mss,
            ChecksumStart = (ushort)l4,
            ChecksumOffset = 16,
        };
        return (header, packet);
    }

    private static void SetTcpChecksum(byte[] frame, bool v6)
    {
        var l4 = v6 ? 54 : 34;
        frame[l4 + 16] = frame[l4 + 17] = 0;
        var pseudo = Pseudo(frame, v6);
        var sum = ReferenceSum([.. pseudo, .. frame.AsSpan(l4).ToArray()]);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(l4 + 16), (ushort)~sum);
    }

    private static bool TcpChecksumVerifies(byte[] frame, bool v6)
    {
        var l4 = v6 ? 54 : 34;
        return ReferenceSum([.. Pseudo(frame, v6), .. frame.AsSpan(l4).ToArray()]) == 0xFFFF;
    }

    private static byte[] Pseudo(byte[] frame, bool v6)
    {
        var l4 = v6 ? 54 : 34;
        var addresses = v6 ? frame.AsSpan(22, 32).ToArray() : frame.AsSpan(26, 8).ToArray();
        var tail = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(tail, (uint)(frame.Length - l4));
        tail[7] = 6;
        return [.. addresses, .. tail];
    }

    /// <summary>RFC 1071 the slow way: big-endian 16-bit words, end-around carry, not complemented.</summary>
    private static int ReferenceSum(ReadOnlySpan<byte> data)
    {
        long sum = 0;
        for (var i = 0; i < data.Length; i += 2) sum += (data[i] << 8) | (i + 1 < data.Length ? data[i + 1] : 0);
        while (sum >> 16 != 0) sum = (sum & 0xFFFF) + (sum >> 16);
        return (int)sum;
    }
}
