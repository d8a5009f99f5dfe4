using NUnit.Framework;
using Overlay.Switching.Flood;

namespace Overlay.Switching.Tests;

/// <summary>The bounded-flood header on the wire: what is written reads back, and what no switch writes is refused.</summary>
public class FloodHeaderTests
{
    [Test]
    public void Every_type_and_gap_reads_back_as_written([Range(0, 2)] int type, [Range(0, 4)] int gap)
    {
        var header = new FloodHeader(new NodeId(new UInt128(0x0123_4567_89AB_CDEF, 1)), new NodeId(new UInt128(7, ulong.MaxValue)), 0xDEAD_BEEF, 9,
            (FloodType)type, (FloodGap)gap);
        var wire = new byte[FloodHeader.Length];
        header.Write(wire);
        Assert.That(FloodHeader.TryRead(wire, out var read), Is.True);
        Assert.That(read, Is.EqualTo(header));
        Assert.That(wire[37] & 0x1F, Is.EqualTo(type), "the type keeps the low five bits: a plain copy's byte is its type alone");
        // Gaps 0-3 in the top two bits, as before the relay; a relay in bit 5 alone, which an older switch refuses as a type.
        Assert.That(wire[37] >> 5, Is.EqualTo(gap < 4 ? gap << 1 : 1));
    }

    [Test]
    public void An_unknown_type_or_a_short_header_is_refused([Values(3, 0x1F, 0x3F, 0x43, 0x60, 0xA0, 0xFF)] int typeByte)
    {
        var wire = new byte[FloodHeader.Length];
        wire[37] = (byte)typeByte;
        Assert.That(FloodHeader.TryRead(wire, out _), Is.False);
        Assert.That(FloodHeader.TryRead(new byte[FloodHeader.Length - 1], out _), Is.False);
    }
}
