using NUnit.Framework;

namespace Overlay.Switching.Tests;

/// <summary>Node IDs as they travel (DESIGN.md §4): parsed, formatted and validated in one place.</summary>
public class NodeIdTests
{
    [Test]
    public void Text_round_trips_as_32_lower_case_hex_characters()
    {
        var id = new NodeId(new UInt128(0x0123_4567_89ab_cdefUL, 0xfedc_ba98_7654_3210UL));
        Assert.That(id.ToString(), Is.EqualTo("0123456789abcdeffedcba9876543210"));
        Assert.That(NodeId.Parse(id.ToString()), Is.EqualTo(id));
        Assert.That(NodeId.IsValid(NodeId.NewRandom().ToString()), Is.True);
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("0123456789abcdeffedcba987654321")]
    [TestCase("0123456789abcdeffedcba98765432100")]
    [TestCase("0123456789ABCDEFFEDCBA9876543210")]
    [TestCase("0123456789abcdeffedcba987654321g")]
    [TestCase(" 123456789abcdeffedcba9876543210")]
    public void Anything_else_is_refused(string? text)
    {
        Assert.That(NodeId.IsValid(text), Is.False);
        Assert.That(NodeId.TryParse(text, out _), Is.False);
    }
}
