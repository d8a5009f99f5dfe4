using NUnit.Framework;
using Overlay.Tap.Linux;

namespace Overlay.Tap.Tests.Linux;

/// <summary>The one interface-name rule the TAP and the node's configuration share (the kernel's dev_valid_name).</summary>
public class InterfaceNameTests
{
    [TestCase("ovl0")]
    [TestCase("a")]
    [TestCase("fifteen-chars-x")]
    [TestCase("tap.0_v-1@x")]
    public void Names_linux_accepts_are_valid(string name) => Assert.That(InterfaceName.IsValid(name), Is.True);

    [TestCase(null)]
    [TestCase("")]
    [TestCase("sixteen-chars-xy")]
    [TestCase(".")]
    [TestCase("..")]
    [TestCase("a/b")]
    [TestCase("a:b")]
    [TestCase("a b")]
    [TestCase("a\tb")]
    [TestCase("tap\u00e9")]
    public void Names_linux_refuses_are_invalid(string? name) => Assert.That(InterfaceName.IsValid(name), Is.False);
}
