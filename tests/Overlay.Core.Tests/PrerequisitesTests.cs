using NUnit.Framework;
using Overlay.TestSupport;

namespace Overlay.Core.Tests;

public class PrerequisitesTests
{
    [Test]
    public void Finds_a_command_every_machine_has() =>
        Assert.That(Prerequisites.FindOnPath("sh"), Is.Not.Null);
}
