using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Switching.Flood;
using Overlay.Switching.Frames;
using Overlay.Tap;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Switching.Tests;

/// <summary>The switch as its host's IGMP/MLD querier: the frames, their schedule, and a real kernel answering them.</summary>
public class MembershipQueryTests
{
    private const ulong QuerierMac = 0x0200_0000_00AB;

    [Test]
    public void The_igmp_query_is_a_well_formed_general_query_and_no_report()
    {
        var frame = new byte[MembershipQuery.IgmpFrameLength];
        Assert.That(MembershipQuery.WriteIgmp(frame, QuerierMac, TimeSpan.FromSeconds(10)), Is.EqualTo(60));
        Assert.That(frame[..6], Is.EqualTo(new byte[] { 0x01, 0x00, 0x5e, 0, 0, 1 }), "to 224.0.0.1's MAC");
        Assert.That(frame[6..12], Is.EqualTo(new byte[] { 0x02, 0, 0, 0, 0, 0xAB }));
        var ip = frame.AsSpan(14, 24);
        Assert.That(Rfc1071(ip, 0), Is.Zero, "IPv4 header checksum");
        Assert.That((ip[8], ip[9], ip[20], ip[21]), Is.EqualTo(((byte)1, (byte)2, (byte)0x94, (byte)4)), "TTL 1, IGMP, Router Alert");
        Assert.That(ip.Slice(12, 8).ToArray(), Is.EqualTo(new byte[] { 0, 0, 0, 0, 224, 0, 0, 1 }), "0.0.0.0 -> 224.0.0.1");
        var igmp = frame.AsSpan(38, 12);
        Assert.That(Rfc1071(igmp, 0), Is.Zero, "IGMP checksum");
        Assert.That((igmp[0], igmp[1], BinaryPrimitives.ReadUInt32BigEndian(igmp[4..]), igmp[8], igmp[9]),
            Is.EqualTo(((byte)0x11, (byte)100, 0u, (byte)2, (byte)125)), "v3 general query, 10 s to answer, QRV 2, QQIC 125");
        Assert.That(MulticastReport.Read(frame, new GroupChange[4]), Is.Zero, "a query changes no subscription");
    }

    [Test]
    public void The_mld_query_is_a_well_formed_general_query_from_a_link_local_address()
    {
        var frame = new byte[MembershipQuery.MldFrameLength];
        Assert.That(MembershipQuery.WriteMld(frame, QuerierMac, TimeSpan.FromSeconds(10)), Is.EqualTo(90));
        Assert.That(frame[..6], Is.EqualTo(new byte[] { 0x33, 0x33, 0, 0, 0, 1 }));
        var ip = frame.AsSpan(14, 40);
        Assert.That((ip[6], ip[7]), Is.EqualTo(((byte)0, (byte)1)), "hop-by-hop header, hop limit 1");
        Assert.That(ip.Slice(8, 16).ToArray(), Is.EqualTo(new byte[] { 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, 0, 0, 0xff, 0xfe, 0, 0, 0xAB }), "fe80:: + modified EUI-64");
        Assert.That(ip.Slice(24, 16).ToArray(), Is.EqualTo(new byte[] { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }));
        Assert.That(frame.AsSpan(54, 8).ToArray(), Is.EqualTo(new byte[] { 58, 0, 5, 2, 0, 0, 1, 0 }), "Router Alert (MLD), then ICMPv6");
        var mld = frame.AsSpan(62, 28);
        uint pseudo = 0;
        for (var i = 8; i < 40; i += 2) pseudo += BinaryPrimitives.ReadUInt16BigEndian(ip[i..]);
        Assert.That(Rfc1071(mld, pseudo + 28 + 58), Is.Zero, "ICMPv6 checksum with the pseudo-header");
        Assert.That((mld[0], BinaryPrimitives.ReadUInt16BigEndian(mld[4..]), mld[24], mld[25]), Is.EqualTo(((byte)130, (ushort)10000, (byte)2, (byte)125)));
        Assert.That(mld.Slice(8, 16).ToArray(), Is.All.Zero, "general: no group");
        Assert.That(MulticastReport.Read(frame, new GroupChange[4]), Is.Zero);
    }

    /// <summary>The RFC 1071 checksum word by word, as the RFC writes it: an oracle independent of the library's.</summary>
    private static ushort Rfc1071(ReadOnlySpan<byte> data, uint sum)
    {
        for (var i = 0; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if ((data.Length & 1) != 0) sum += (uint)data[^1] << 8;
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    private sealed class Recorder : ISwitchPort
    {
        public readonly List<byte[]> Frames = [];
        public int Floods;
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) { Frames.Add(frame.ToArray()); return true; }
        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) { Floods++; return true; }
    }

    [Test]
    public void The_switch_asks_its_own_host_at_start_a_quarter_interval_later_and_then_every_interval()
    {
        var clock = new ManualClock();
        var host = new Recorder();
        var neighbour = new Recorder();
        var sw = new OverlaySwitch(new NodeId(0xAB), host, new SwitchOptions(), clock);
        sw.AddLink(new NodeId(2), neighbour);
        var sentAt = new List<int>();
        for (var second = 0; second <= 300; second++)
        {
            clock.Now = DateTimeOffset.UnixEpoch.AddSeconds(second);
            var before = host.Frames.Count;
            sw.Tick();
            if (host.Frames.Count > before) sentAt.Add(second);
        }
        Assert.That(sentAt, Is.EqualTo(new[] { 0, 31, 156, 281 }));
        Assert.That(host.Frames.Select(f => f.Length), Is.EqualTo(Enumerable.Repeat(new[] { 60, 90 }, 4).SelectMany(x => x)), "an IGMP and an MLD query each time");
        Assert.That(host.Frames[0][6..12], Is.EqualTo(new byte[] { 2, 0, 0, 0, 0, 0xAB }), "from the switch's querier MAC");
        Assert.That((neighbour.Frames.Count, neighbour.Floods), Is.EqualTo((0, 0)), "queries stay with the switch's own host");
        Assert.That(sw.Counters.MembershipQueries, Is.EqualTo(8));

        var quiet = new Recorder();
        var off = new OverlaySwitch(new NodeId(3), quiet, new SwitchOptions { MembershipQueryInterval = TimeSpan.Zero }, clock);
        off.Tick();
        Assert.That(quiet.Frames, Is.Empty, "turned off");
    }
}

/// <summary>A kernel host behind a real TAP answers the switch's queries with the groups it is in.</summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelQuerierTests
{
    /// <summary>Frames the host sends; current-state records (the answer to a query) are picked out by group.</summary>
    private sealed class Answers(OverlaySwitch sw) : IFrameSink
    {
        public BlockingCollection<string> CurrentState { get; } = [];

        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            sw.OnLocalFrame(frame);
            foreach (var group in CurrentStateGroups(frame)) CurrentState.Add(group);
        }
    }

    private sealed class TapPort(TapDevice tap) : ISwitchPort
    {
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) => tap.TryWrite(frame);
        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) => false;
    }

    [Test]
    public async Task The_host_answers_the_queries_with_the_groups_it_joined()
    {
        Prerequisites.RequireNetworkNamespaces();
        using var ns = NetNamespace.Create($"oq{Random.Shared.Next(0x100000):x5}");
        await using var tap = ns.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "ovq0", MacAddress = PhysicalAddress.Parse("02-89-00-00-00-01"),
            Addresses = [InterfaceAddress.Parse("10.89.0.1/24"), InterfaceAddress.Parse("fd89::1/64")],
        }));
        var sw = new OverlaySwitch(new NodeId(0x89), new TapPort(tap), new SwitchOptions { MembershipQueryResponse = TimeSpan.FromSeconds(1) });
        var answers = new Answers(sw);
        tap.Start(answers);
        ns.Exec("ip", "addr add 239.1.2.3/32 dev ovq0 autojoin");
        ns.Exec("ip", "-6 addr add ff15::7/128 dev ovq0 autojoin");
        // Joining sends state-change records; only a query makes the host send current-state ones.
        sw.Tick();
        var seen = new HashSet<string>();
        while (!(seen.Contains("239.1.2.3") && seen.Contains("ff15::7")) && answers.CurrentState.TryTake(out var group, TimeSpan.FromSeconds(5)))
            seen.Add(group);
        Assert.That(seen, Does.Contain("239.1.2.3").And.Contain("ff15::7"), "IGMPv3 and MLDv2 current-state reports for the joined groups");
        Assert.That(sw.Counters.MembershipQueries, Is.EqualTo(2));
    }

    /// <summary>Groups in MODE_IS_EXCLUDE records (RFC 3376 §4.2.12, RFC 3810 §5.2.12) of an IGMPv3 or MLDv2 report.</summary>
    private static List<string> CurrentStateGroups(ReadOnlySpan<byte> frame)
    {
        var groups = new List<string>();
        if (frame.Length < 14) return groups;
        var type = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        ReadOnlySpan<byte> records;
        int count, addressLength;
        if (type == 0x0800 && frame.Length >= 34 && frame[23] == 2)
        {
            var igmp = frame[(14 + (frame[14] & 0x0F) * 4)..];
            if (igmp.Length < 8 || igmp[0] != 0x22) return groups;
            count = BinaryPrimitives.ReadUInt16BigEndian(igmp[6..]);
            records = igmp[8..];
            addressLength = 4;
        }
        else if (type == 0x86DD && frame.Length >= 62 && frame[20] == 0)
        {
            var hopByHop = frame[54..];
            var mld = hopByHop[((hopByHop[1] + 1) * 8)..];
            if (hopByHop[0] != 58 || mld.Length < 8 || mld[0] != 143) return groups;
            count = BinaryPrimitives.ReadUInt16BigEndian(mld[6..]);
            records = mld[8..];
            addressLength = 16;
        }
        else
        {
            return groups;
        }
        for (var i = 0; i < count && records.Length >= 4 + addressLength; i++)
        {
            var sources = BinaryPrimitives.ReadUInt16BigEndian(records[2..]);
            var length = 4 + addressLength + sources * addressLength + records[1] * 4;
            if (records[0] == 2) groups.Add(new System.Net.IPAddress(records.Slice(4, addressLength)).ToString());
            if (records.Length < length) break;
            records = records[length..];
        }
        return groups;
    }
}
