using NUnit.Framework;
using Overlay.Engine;
using R = Overlay.Engine.LinkCloseReason;

namespace Overlay.Core.Tests.Engine;

/// <summary>What ending a link means, for each reason: the change reported, whether the peer is told, what the topology hears.</summary>
[TestFixture]
internal sealed class LinkEndingTests
{
    [TestCase(R.NotWanted, LinkChange.Closed, true, TopologyNotice.None, "no longer wanted")]
    [TestCase(R.PeerLeft, LinkChange.Closed, false, TopologyNotice.None, "the peer left the overlay")]
    [TestCase(R.ClosedByPeer, LinkChange.Closed, false, TopologyNotice.Down, "closed by the peer: bye")]
    [TestCase(R.CollisionLost, LinkChange.Closed, false, TopologyNotice.None, "collision: the peer's request won")]
    [TestCase(R.Replaced, LinkChange.Closed, false, TopologyNotice.None, "replaced by a new link from the peer")]
    [TestCase(R.SetupFailed, LinkChange.Failed, true, TopologyNotice.Failed, "bye")]
    [TestCase(R.RestartRefused, LinkChange.Failed, false, TopologyNotice.Failed, "restart refused: bye")]
    [TestCase(R.Unrecoverable, LinkChange.Failed, true, TopologyNotice.Failed, "bye")]
    [TestCase(R.Shutdown, LinkChange.Closed, true, TopologyNotice.None, "the node is shutting down")]
    public void Each_reason_decides_the_change_who_is_told_and_the_text(R reason, LinkChange change, bool notifyPeer, TopologyNotice topology, string text) =>
        Assert.That(LinkEnding.Of(reason, "bye"), Is.EqualTo(new LinkEnding(change, notifyPeer, topology, text)));

    [Test]
    public void Every_reason_has_an_ending() =>
        Assert.That(Enum.GetValues<R>().Select(r => LinkEnding.Of(r, "x")), Has.None.Null);
}
