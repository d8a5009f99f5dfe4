using NUnit.Framework;
using Overlay.Links;
using Overlay.TestSupport;

namespace Overlay.Core.Tests.Links;

public class FrameSealingTests
{
    private static readonly byte[] Key = Enumerable.Range(0, 16).Select(i => (byte)i).ToArray();
    private static readonly byte[] Salt = [1, 2, 3, 4];

    private static byte[] Seal(FrameSealer sealer, byte[] payload, PacketKind kind = PacketKind.Frame)
    {
        var packet = new byte[payload.Length + FrameSealer.Overhead];
        payload.CopyTo(packet, FrameSealer.HeaderLength);
        var n = sealer.Seal(packet, payload.Length, kind);
        return packet[..n];
    }

    [TestCase(true)]
    [TestCase(false)]
    public void Sealing_a_payload_where_it_lies_gives_the_bytes_of_sealing_a_copy_in_place(bool libCrypto)
    {
        var implementation = libCrypto ? GcmImplementation.LibCrypto : GcmImplementation.Managed;
        if (implementation == GcmImplementation.LibCrypto && !LibCryptoGcm.IsAvailable)
        {
            if (OperatingSystem.IsLinux() && Prerequisites.IsCi) Assert.Fail("libcrypto.so.3 did not load under CI");
            Assert.Ignore("skipped: libcrypto.so.3 (OpenSSL 3) is not available here");
        }
        using var inPlace = new FrameSealer(Key, Salt, epoch: 2, implementation);
        using var apart = new FrameSealer(Key, Salt, epoch: 2, implementation);
        var frame = Enumerable.Range(0, 1400).Select(i => (byte)(i * 13)).ToArray();
        var copy = (byte[])frame.Clone();
        for (var n = 0; n < 3; n++)
        {
            var expected = Seal(inPlace, frame, PacketKind.Frame);
            var packet = new byte[frame.Length + FrameSealer.Overhead + 7];
            Assert.That(apart.Seal(packet, frame, PacketKind.Frame), Is.EqualTo(expected.Length));
            Assert.That(packet[..expected.Length], Is.EqualTo(expected), $"packet {n}");
        }
        Assert.That(frame, Is.EqualTo(copy), "the payload read where it lies is left as it was");

        var buffer = new byte[frame.Length + FrameSealer.Overhead];
        Assert.That(() => apart.Seal(buffer, buffer.AsSpan(4, 100), PacketKind.Frame), Throws.ArgumentException, "a payload over the header");
        Assert.That(() => apart.Seal(buffer, buffer.AsSpan(FrameSealer.HeaderLength + 1, 100), PacketKind.Frame), Throws.ArgumentException,
            "a payload shifted against its place");
        Assert.That(apart.Sequence, Is.EqualTo(3), "a refused payload spends no sequence number");
        Assert.That(apart.Seal(buffer, buffer.AsSpan(FrameSealer.HeaderLength, 100), PacketKind.Frame), Is.EqualTo(100 + FrameSealer.Overhead),
            "a payload exactly at its place is sealed in place");
    }

    [Test]
    public void After_dispose_nothing_is_sealed_or_opened_and_nothing_throws()
    {
        var sealer = new FrameSealer(Key, Salt, epoch: 0);
        var opener = new FrameOpener(Key, Salt, epoch: 0);
        var packet = Seal(sealer, new byte[64], PacketKind.Frame);
        sealer.Dispose();
        opener.Dispose();
        var buffer = new byte[FrameSealer.Overhead + 64];
        Assert.That(sealer.Seal(buffer, 64, PacketKind.Frame), Is.Zero, "a closed link's sealer seals nothing");
        Assert.That(sealer.Sequence, Is.EqualTo(1), "and spends no sequence number");
        Assert.That(opener.TryOpen(packet, out _, out _), Is.Not.EqualTo(OpenResult.Opened), "a closed link's opener opens nothing");
        sealer.Dispose(); // twice is harmless
        opener.Dispose();
    }

    [Test]
    public void A_sealed_frame_opens_to_the_same_bytes_and_kind()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 3);
        using var opener = new FrameOpener(Key, Salt, epoch: 3);
        var frame = Enumerable.Range(0, 1400).Select(i => (byte)(i * 7)).ToArray();
        var packet = Seal(sealer, frame, PacketKind.FloodFrame);
        Assert.That(packet[0], Is.InRange(192, 255), "RFC 7983 demultiplexing puts data packets in 192-255");
        Assert.That(packet.AsSpan(FrameSealer.HeaderLength, 1400).SequenceEqual(frame), Is.False, "encrypted");
        Assert.That(opener.TryOpen(packet, out var kind, out var payload), Is.EqualTo(OpenResult.Opened));
        Assert.That((kind, payload.ToArray()), Is.EqualTo((PacketKind.FloodFrame, frame)));
    }

    [Test]
    public void Every_single_byte_change_is_refused()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 0);
        var original = Seal(sealer, new byte[64]);
        for (var i = 0; i < original.Length; i++)
        {
            using var opener = new FrameOpener(Key, Salt, epoch: 0);
            var tampered = (byte[])original.Clone();
            tampered[i] ^= 0x01;
            Assert.That(opener.TryOpen(tampered, out _, out _), Is.Not.EqualTo(OpenResult.Opened), $"byte {i}");
        }
    }

    [Test]
    public void A_changed_kind_fails_the_tag_though_the_header_is_not_associated_data()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 0);
        var original = Seal(sealer, new byte[64]); // a plain frame
        foreach (var other in new[] { PacketKind.FloodFrame, PacketKind.Keepalive, PacketKind.KeepaliveEcho })
        {
            using var opener = new FrameOpener(Key, Salt, epoch: 0);
            var relabelled = (byte[])original.Clone();
            relabelled[0] = (byte)(FrameSealer.KindBase | (byte)other);
            Assert.That(opener.TryOpen(relabelled, out _, out _), Is.EqualTo(OpenResult.Forged), $"frame relabelled {other}");
        }
    }

    [Test]
    public void A_wrong_key_is_a_forgery_and_a_wrong_epoch_is_unknown()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 1);
        using var wrongKey = new FrameOpener(new byte[16], Salt, epoch: 1);
        using var wrongEpoch = new FrameOpener(Key, Salt, epoch: 2);
        Assert.That(wrongKey.TryOpen(Seal(sealer, new byte[10]), out _, out _), Is.EqualTo(OpenResult.Forged));
        Assert.That(wrongEpoch.TryOpen(Seal(sealer, new byte[10]), out _, out _), Is.EqualTo(OpenResult.UnknownEpoch));
        Assert.That(wrongEpoch.TryOpen(new byte[5], out _, out _), Is.EqualTo(OpenResult.Malformed));
    }

    [Test]
    public void Replays_and_packets_behind_the_window_are_dropped_while_reordering_inside_it_is_accepted()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 0);
        using var opener = new FrameOpener(Key, Salt, epoch: 0);
        var packets = Enumerable.Range(0, ReplayWindow.Size + 100).Select(_ => Seal(sealer, new byte[8])).ToArray();

        Assert.That(opener.TryOpen((byte[])packets[10].Clone(), out _, out _), Is.EqualTo(OpenResult.Opened));
        Assert.That(opener.TryOpen((byte[])packets[10].Clone(), out _, out _), Is.EqualTo(OpenResult.Replayed));
        Assert.That(opener.TryOpen((byte[])packets[5].Clone(), out _, out _), Is.EqualTo(OpenResult.Opened), "reordered, inside the window");
        Assert.That(opener.TryOpen((byte[])packets[ReplayWindow.Size + 50].Clone(), out _, out _), Is.EqualTo(OpenResult.Opened));
        Assert.That(opener.TryOpen((byte[])packets[11].Clone(), out _, out _), Is.EqualTo(OpenResult.TooOld), "behind the window");
        Assert.That(opener.TryOpen((byte[])packets[ReplayWindow.Size + 49].Clone(), out _, out _), Is.EqualTo(OpenResult.Opened));
        Assert.That(opener.TryOpen((byte[])packets[ReplayWindow.Size + 49].Clone(), out _, out _), Is.EqualTo(OpenResult.Replayed));
    }

    [Test]
    public void A_forgery_does_not_move_the_window()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 0);
        using var opener = new FrameOpener(Key, Salt, epoch: 0);
        var first = Seal(sealer, new byte[8]);
        var forged = (byte[])first.Clone();
        forged[2] = 0x7f; // claims a far-future sequence
        Assert.That(opener.TryOpen(forged, out _, out _), Is.EqualTo(OpenResult.Forged));
        Assert.That(opener.TryOpen(first, out _, out _), Is.EqualTo(OpenResult.Opened), "the genuine packet still fits the window");
    }

    [Test]
    public void Sealing_and_opening_allocate_nothing_per_packet()
    {
        using var sealer = new FrameSealer(Key, Salt, epoch: 0);
        using var opener = new FrameOpener(Key, Salt, epoch: 0);
        var buffer = new byte[1400 + FrameSealer.Overhead];
        for (var i = 0; i < 100; i++) Roundtrip(); // warm up
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++) Roundtrip();
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);

        void Roundtrip()
        {
            var n = sealer.Seal(buffer, 1400, PacketKind.Frame);
            if (opener.TryOpen(buffer.AsSpan(0, n), out _, out _) != OpenResult.Opened) throw new InvalidOperationException();
        }
    }
}
