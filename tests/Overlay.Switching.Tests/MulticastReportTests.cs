using NUnit.Framework;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

public class MulticastReportTests
{
    private static GroupChange[] Read(byte[] frame)
    {
        var changes = new GroupChange[8];
        return changes[..MulticastReport.Read(frame, changes)];
    }

    [Test]
    public void Igmp_v2_reports_and_leaves() =>
        Assert.That(Read(Packets.IgmpV2Report(0x0200_0000_0001, 0xEF010203)).Concat(Read(Packets.IgmpV2Leave(0x0200_0000_0001, 0xEF010203))),
            Is.EqualTo(new[] { new GroupChange(0x0100_5E01_0203, true), new GroupChange(0x0100_5E01_0203, false) }));

    [TestCase((byte)2, 0, true)]   // MODE_IS_EXCLUDE
    [TestCase((byte)4, 0, true)]   // CHANGE_TO_EXCLUDE: join
    [TestCase((byte)3, 0, false)]  // CHANGE_TO_INCLUDE of nothing: leave
    [TestCase((byte)5, 1, true)]   // ALLOW_NEW_SOURCES
    public void Igmp_v3_records(byte type, int sources, bool join) =>
        Assert.That(Read(Packets.IgmpV3Report(0x0200_0000_0001, 0xEF000001, type, sources)), Is.EqualTo(new[] { new GroupChange(0x0100_5E00_0001, join) }));

    [Test]
    public void Mld_v2_record_behind_a_hop_by_hop_header()
    {
        var group = new byte[16];
        group[0] = 0xff; group[1] = 0x05; group[15] = 0x42; group[14] = 0x01;
        Assert.That(Read(Packets.MldV2Report(0x0200_0000_0001, group, recordType: 4)), Is.EqualTo(new[] { new GroupChange(0x3333_0000_0142, true) }));
    }

    [Test]
    public void Truncated_and_lying_reports_yield_nothing()
    {
        var report = Packets.IgmpV3Report(0x0200_0000_0001, 0xEF000001, 4, sources: 3);
        for (var cut = 0; cut < report.Length; cut++)
            Assert.That(() => Read(report[..cut]), Throws.Nothing);
        report[14 + 20 + 7] = 200; // claims 200 records
        Assert.That(Read(report).Length, Is.LessThanOrEqualTo(1));
    }
}
