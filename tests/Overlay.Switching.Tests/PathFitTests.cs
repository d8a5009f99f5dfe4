using System.Buffers.Binary;
using NUnit.Framework;
using Overlay.Switching.Flood;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

/// <summary>
/// Frames that do not fit a link's path MTU: SYNs crossing the local port get a lower MSS with a checksum that still
/// verifies; IPv4 with DF and IPv6 get the ICMP error a router would send, into the local port; the rest is counted.
/// </summary>
public class PathFitTests
{
    private static readonly byte[] HostMac = [0x02, 0, 0, 0, 0, 1], PeerMac = [0x02, 0, 0, 0, 0, 2];
    private static readonly byte[] HostV4 = [10, 99, 0, 1], PeerV4 = [10, 99, 0, 2];
    private static readonly byte[] HostV6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], PeerV6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// <summary>An Ethernet frame from the host to the peer carrying an IPv4 or IPv6 packet of <paramref name="l4"/>.</summary>
    private static byte[] Frame(bool v6, byte protocol, byte[] l4, bool dontFragment = true)
    {
        var ipLength = v6 ? 40 : 20;
        var frame = new byte[14 + ipLength + l4.Length];
        PeerMac.CopyTo(frame, 0);
        HostMac.CopyTo(frame, 6);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), v6 ? (ushort)0x86DD : (ushort)0x0800);
        var ip = frame.AsSpan(14);
        if (v6)
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)l4.Length);
            ip[6] = protocol;
            ip[7] = 64;
            HostV6.CopyTo(ip[8..]);
            PeerV6.CopyTo(ip[24..]);
        }
        else
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + l4.Length));
            if (dontFragment) ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = protocol;
            HostV4.CopyTo(ip[12..]);
            PeerV4.CopyTo(ip[16..]);
            InternetChecksum.SetIPv4HeaderChecksum(ip[..20]);
        }
        l4.CopyTo(ip[ipLength..]);
        return frame;
    }

    /// <summary>A SYN with the options Linux sends, the MSS option placed at an even or an odd offset (after one NOP).</summary>
    private static byte[] Syn(bool v6, ushort mss, bool oddOffset)
    {
        var options = oddOffset
            ? new byte[] { 1, 2, 4, (byte)(mss >> 8), (byte)mss, 1, 1, 1, 4, 2, 1, 1 }
            : new byte[] { 2, 4, (byte)(mss >> 8), (byte)mss, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7 };
        var tcp = new byte[20 + options.Length];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(2), 5201);
        tcp[12] = (byte)(tcp.Length / 4 << 4);
        tcp[13] = 0x02;
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(14), 64240);
        options.CopyTo(tcp, 20);
        var frame = Frame(v6, 6, tcp);
        SetL4Checksum(frame, v6, 6, checksumOffset: 16);
        return frame;
    }

    private static void SetL4Checksum(byte[] frame, bool v6, byte protocol, int checksumOffset)
    {
        var ip = frame.AsSpan(14);
        var l4 = ip[(v6 ? 40 : 20)..];
        l4[checksumOffset] = l4[checksumOffset + 1] = 0;
        var sum = InternetChecksum.PseudoHeader(ip, v6, protocol, l4.Length);
        InternetChecksum.Store(l4[checksumOffset..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(l4, sum)));
    }

    /// <summary>True when the L4 checksum (with the pseudo-header) verifies: the sum of everything folds to all ones.</summary>
    private static bool L4ChecksumValid(ReadOnlySpan<byte> frame, bool v6, byte protocol)
    {
        var ip = frame[14..];
        var l4 = ip[(v6 ? 40 : 20)..];
        return InternetChecksum.Fold(InternetChecksum.Add(l4, InternetChecksum.PseudoHeader(ip, v6, protocol, l4.Length))) == 0xFFFF;
    }

    private static ushort MssOf(ReadOnlySpan<byte> frame, bool v6)
    {
        var tcp = frame[(14 + (v6 ? 40 : 20))..];
        for (var i = 20; i < (tcp[12] >> 4) * 4;)
        {
            if (tcp[i] == 1) { i++; continue; }
            if (tcp[i] == 2) return BinaryPrimitives.ReadUInt16BigEndian(tcp[(i + 2)..]);
            i += tcp[i + 1];
        }
        return 0;
    }

    [TestCase(false, false)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    [TestCase(true, true)]
    public void A_syn_gets_the_mss_that_fits_and_a_checksum_that_still_verifies(bool v6, bool oddOffset)
    {
        var frame = Syn(v6, 1370, oddOffset);
        Assert.That(L4ChecksumValid(frame, v6, 6), Is.True, "the test's own SYN");
        Assert.That(PathFit.IsTcpSyn(frame), Is.True);
        // A path whose link takes 1200-byte frames: 1200 - 14 - IP - 20.
        Assert.That(PathFit.ClampMss(frame, 1200), Is.True);
        Assert.That(MssOf(frame, v6), Is.EqualTo(1200 - 14 - (v6 ? 40 : 20) - 20));
        Assert.That(L4ChecksumValid(frame, v6, 6), Is.True, "fixed incrementally (RFC 1624)");
        Assert.That(PathFit.ClampMss(frame, 1200), Is.False, "already small enough: untouched");
    }

    [Test]
    public void An_ack_is_not_a_syn_and_keeps_its_options()
    {
        var frame = Syn(v6: false, 1370, oddOffset: false);
        frame[14 + 20 + 13] = 0x10; // ACK only
        Assert.That(PathFit.IsTcpSyn(frame), Is.False);
        Assert.That(PathFit.ClampMss(frame, 1200), Is.False);
        Assert.That(MssOf(frame, false), Is.EqualTo(1370));
    }

    [Test]
    public void An_ipv4_packet_with_df_gets_fragmentation_needed_quoting_it()
    {
        var frame = Frame(v6: false, 17, new byte[1400]);
        var answer = new byte[PathFit.MaxTooBigFrame];
        var length = PathFit.WriteTooBig(frame, 1200, answer);
        Assert.That(length, Is.GreaterThan(0));
        var reply = answer.AsSpan(0, length);
        Assert.That(reply[..6].ToArray(), Is.EqualTo(HostMac), "back to the host");
        Assert.That(reply.Slice(6, 6).ToArray(), Is.EqualTo(PeerMac));
        var ip = reply[14..];
        Assert.That(length - 14, Is.EqualTo(576), "RFC 1812: at most 576 bytes");
        Assert.That(InternetChecksum.Fold(InternetChecksum.Add(ip[..20])), Is.EqualTo(0xFFFF), "IP header checksum");
        Assert.That((ip[9], ip.Slice(12, 4).ToArray(), ip.Slice(16, 4).ToArray()), Is.EqualTo(((byte)1, PeerV4, HostV4)));
        var icmp = ip[20..];
        Assert.That((icmp[0], icmp[1], BinaryPrimitives.ReadUInt16BigEndian(icmp[6..])), Is.EqualTo(((byte)3, (byte)4, (ushort)(1200 - 14))));
        Assert.That(InternetChecksum.Fold(InternetChecksum.Add(icmp)), Is.EqualTo(0xFFFF), "ICMP checksum");
        Assert.That(icmp.Slice(8, 20).ToArray(), Is.EqualTo(frame.AsSpan(14, 20).ToArray()), "quotes the packet's header");
    }

    [Test]
    public void An_ipv6_packet_gets_packet_too_big_with_a_valid_checksum()
    {
        var frame = Frame(v6: true, 17, new byte[1400]);
        var answer = new byte[PathFit.MaxTooBigFrame];
        var length = PathFit.WriteTooBig(frame, 1350, answer);
        Assert.That(length - 14, Is.EqualTo(1280), "RFC 4443: as much as fits the minimum MTU");
        var ip = answer.AsSpan(14, length - 14);
        Assert.That((ip[6], ip.Slice(8, 16).ToArray(), ip.Slice(24, 16).ToArray()), Is.EqualTo(((byte)58, PeerV6, HostV6)));
        var icmp = ip[40..];
        Assert.That((icmp[0], BinaryPrimitives.ReadUInt32BigEndian(icmp[4..])), Is.EqualTo(((byte)2, (uint)(1350 - 14))));
        Assert.That(InternetChecksum.Fold(InternetChecksum.Add(icmp, InternetChecksum.PseudoHeader(ip, true, 58, icmp.Length))), Is.EqualTo(0xFFFF));
    }

    [Test]
    public void No_error_for_ipv4_without_df_for_icmp_errors_or_for_non_ip()
    {
        var answer = new byte[PathFit.MaxTooBigFrame];
        Assert.That(PathFit.WriteTooBig(Frame(false, 17, new byte[1400], dontFragment: false), 1200, answer), Is.Zero);
        var icmpError = new byte[1400];
        icmpError[0] = 3;
        Assert.That(PathFit.WriteTooBig(Frame(false, 1, icmpError), 1200, answer), Is.Zero, "no error about an error");
        var v6Error = new byte[1400];
        v6Error[0] = 2;
        Assert.That(PathFit.WriteTooBig(Frame(true, 58, v6Error), 1300, answer), Is.Zero);
        var arp = Frame(false, 17, new byte[1400]);
        arp[12] = 0x08;
        arp[13] = 0x06;
        Assert.That(PathFit.WriteTooBig(arp, 1200, answer), Is.Zero);
    }

    [Test]
    public void An_ipv4_packet_without_df_is_cut_into_fragments_that_fit_and_reassemble_to_it()
    {
        var l4 = new byte[3000];
        new Random(5).NextBytes(l4);
        var frame = Frame(false, 17, l4, dontFragment: false);
        var output = new byte[1200];
        var position = 0;
        var data = new byte[l4.Length];
        int length, count = 0, lastOffset = -1;
        while ((length = PathFit.WriteFragment(frame, 1200, ref position, output)) > 0)
        {
            count++;
            var ip = output.AsSpan(14, length - 14);
            Assert.That(length, Is.LessThanOrEqualTo(1200));
            Assert.That(InternetChecksum.Fold(InternetChecksum.Add(ip[..20])), Is.EqualTo(0xFFFF));
            var flags = BinaryPrimitives.ReadUInt16BigEndian(ip[6..]);
            var offset = (flags & 0x1FFF) * 8;
            Assert.That(offset, Is.GreaterThan(lastOffset));
            lastOffset = offset;
            Assert.That((flags & 0x2000) != 0, Is.EqualTo(position < l4.Length), "MF on all but the last");
            Assert.That(BinaryPrimitives.ReadUInt16BigEndian(ip[2..]), Is.EqualTo(ip.Length));
            ip[20..].CopyTo(data.AsSpan(offset));
        }
        Assert.That(count, Is.EqualTo(3));
        Assert.That(data, Is.EqualTo(l4), "the fragments carry the whole packet");
        position = 0;
        Assert.That(PathFit.WriteFragment(Frame(false, 17, l4), 1200, ref position, output), Is.Zero, "DF: never fragmented");
    }

    private sealed class Port(int maxFrameLength) : ISwitchPort
    {
        public readonly List<byte[]> Frames = [];
        public int MaxFrameLength { get; set; } = maxFrameLength;
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            Frames.Add(frame.ToArray());
            return true;
        }
        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            Frames.Add(frame.ToArray());
            return true;
        }
    }

    /// <summary>A switch whose one link (to a peer whose address it has learned) takes <paramref name="linkFrames"/>-byte frames.</summary>
    private static (OverlaySwitch Switch, Port Local, Port Link, NodeId Peer) Switch(int linkFrames)
    {
        var local = new Port(int.MaxValue);
        var link = new Port(linkFrames);
        var self = new NodeId(1);
        var peer = new NodeId(UInt128.MaxValue / 2);
        var sw = new OverlaySwitch(self, local, new SwitchOptions { MembershipQueryInterval = TimeSpan.Zero });
        sw.AddLink(peer, link);
        Assert.That(sw.BindAddress(peer, EthernetFrame.MacKey(PeerMac)), Is.True);
        // The peer's host shows itself (a broadcast flood from it) so its address has a path.
        var hello = new byte[60];
        hello.AsSpan(0, 6).Fill(0xFF);
        PeerMac.CopyTo(hello, 6);
        sw.OnLinkFlood(peer, new FloodHeader(peer, peer, 1, 1, FloodType.Broadcast), hello);
        Assert.That(local.Frames, Has.Count.EqualTo(1), "the hello was delivered, so its address was learned");
        local.Frames.Clear();
        return (sw, local, link, peer);
    }

    [Test]
    public void The_switch_answers_the_host_for_frames_too_big_for_the_link_and_sends_those_that_fit()
    {
        var (sw, local, link, _) = Switch(linkFrames: 1200);
        sw.OnLocalFrame(Frame(false, 17, new byte[1000]));
        Assert.That(link.Frames, Has.Count.EqualTo(1), "fits: sent");
        sw.OnLocalFrame(Frame(false, 17, new byte[1300]));
        sw.OnLocalFrame(Frame(true, 17, new byte[1300]));
        Assert.That(link.Frames, Has.Count.EqualTo(1), "nothing too big reached the link");
        Assert.That(local.Frames.Select(f => f[14] >> 4), Is.EqualTo(new[] { 4, 6 }), "ICMP and ICMPv6 errors into the local port");
        Assert.That(sw.Counters.TooBigAnswered, Is.EqualTo(2));
        sw.OnLocalFrame(Frame(false, 17, new byte[1300], dontFragment: false));
        Assert.That(link.Frames.Skip(1).Select(f => f.Length), Has.All.LessThanOrEqualTo(1200), "without DF: fragments that fit");
        Assert.That((link.Frames.Count, sw.Counters.Fragmented, sw.Counters.TooBigDropped), Is.EqualTo((3, 1L, 0L)));
        var arp = Frame(false, 17, new byte[1300]);
        arp[13] = 0x06;
        sw.OnLocalFrame(arp);
        Assert.That(sw.Counters.TooBigDropped, Is.EqualTo(1), "not IP: dropped and counted");

        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var big = Frame(false, 17, new byte[1300]);
        local.Frames.Capacity = 200;
        for (var i = 0; i < 100; i++) sw.OnLocalFrame(big);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - allocated, Is.LessThan(100 * 700), "only the test port's copies allocate");
    }

    [Test]
    public void Syns_are_clamped_both_ways_across_the_local_port()
    {
        var (sw, local, link, peer) = Switch(linkFrames: 1200);
        sw.OnLocalFrame(Syn(false, 1370, oddOffset: false));
        Assert.That(MssOf(link.Frames.Single(), false), Is.EqualTo(1200 - 54));
        Assert.That(L4ChecksumValid(link.Frames.Single(), false, 6), Is.True);

        // The answer from the peer's host (SYN-ACK) comes in over the link and is clamped on its way to the host.
        var synAck = Syn(false, 1370, oddOffset: true);
        HostMac.CopyTo(synAck, 0);
        PeerMac.CopyTo(synAck, 6);
        synAck[14 + 20 + 13] = 0x12;
        SetL4Checksum(synAck, false, 6, 16);
        sw.OnLinkFrame(peer, synAck);
        Assert.That(MssOf(local.Frames.Single(), false), Is.EqualTo(1200 - 54));
        Assert.That(L4ChecksumValid(local.Frames.Single(), false, 6), Is.True);
        Assert.That(sw.Counters.MssClamped, Is.EqualTo(2));
    }
}
