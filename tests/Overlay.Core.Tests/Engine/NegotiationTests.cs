using NUnit.Framework;
using Overlay.Core.Tests.Nat;
using Overlay.Core.Tests.Signaling;
using Overlay.Engine;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Signaling.InProcess;
using Overlay.Topology;

namespace Overlay.Core.Tests.Engine;

/// <summary>
/// The link manager's negotiation between real engines, with paths over memory, in-process signaling and a clock the
/// test moves: DTLS and the TinCan link run for real, nothing opens a socket and nothing waits on the wall clock.
/// </summary>
[TestFixture]
public class NegotiationTests
{
    private ManualTimeProvider _time = null!;
    private MemoryPathNetwork _paths = null!;
    private InProcessSignalingHub _hub = null!;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly Dictionary<string, NodeIdentity> _identities = [];

    [SetUp]
    public void SetUp()
    {
        _time = new ManualTimeProvider();
        _paths = new MemoryPathNetwork();
        _hub = new InProcessSignalingHub();
    }

    [TearDown]
    public async Task TearDown()
    {
        for (var i = _owned.Count - 1; i >= 0; i--) await _owned[i].DisposeAsync();
        _owned.Clear();
        foreach (var identity in _identities.Values) identity.Dispose();
        _identities.Clear();
    }

    /// <summary>Two node IDs, the lower first.</summary>
    private (string Low, string High) TwoIds()
    {
        var a = NewId();
        var b = NewId();
        return string.CompareOrdinal(a, b) < 0 ? (a, b) : (b, a);
    }

    /// <summary>A node ID with the key that owns it (links check that the peer's key owns the ID it signals under).</summary>
    private string NewId()
    {
        var identity = NodeIdentity.CreateEphemeral();
        _identities[identity.NodeId] = identity;
        return identity.NodeId;
    }

    private async Task<EngineNode> NodeAsync(string nodeId, LinkTimings? timings = null)
    {
        _identities.Remove(nodeId, out var identity);
        var node = await EngineNode.ConnectAsync(_hub, nodeId, _time, _paths, timings, identity);
        _owned.Add(node);
        return node;
    }

    /// <summary>Both nodes know each other before either starts, so both ask for the link at once.</summary>
    private async Task<(EngineNode Low, EngineNode High)> TwoNodesAsync(LinkTimings? timings = null)
    {
        var (lowId, highId) = TwoIds();
        var low = await NodeAsync(lowId, timings);
        var high = await NodeAsync(highId, timings);
        low.Start();
        high.Start();
        return (low, high);
    }

    private static Func<LinkEvent, bool> Change(LinkChange change, string? linkId = null) => e => e.Change == change && (linkId is null || e.LinkId == linkId);

    [Test]
    public async Task Both_asking_at_once_yields_one_link_up_at_both_ends_the_higher_node_ID_s()
    {
        var (low, high) = await TwoNodesAsync();

        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up at the higher node");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the same link up at the lower node");

        var atHigh = (await high.LinksAsync()).Single();
        var atLow = (await low.LinksAsync()).Single();
        Assert.Multiple(() =>
        {
            Assert.That(atLow.LinkId, Is.EqualTo(atHigh.LinkId));
            Assert.That(atHigh.Initiator, Is.True, "the higher node ID's link wins");
            Assert.That(atLow.Initiator, Is.False);
            Assert.That(new[] { atHigh.State, atLow.State }, Has.All.EqualTo(LinkChange.Up));
            Assert.That(atHigh.Path, Is.Not.Null);
            Assert.That(high.Events.Concat(low.Events).Where(e => e.Change == LinkChange.Up).Select(e => e.LinkId), Has.All.EqualTo(up.LinkId),
                "no other link came up");
        });
        // The lower node's own attempt, if it got as far as a link, ended without coming up.
        foreach (var attempt in low.Events.Where(e => e.Change == LinkChange.Connecting && e.LinkId != up.LinkId))
            Assert.That(low.Events.Where(e => e.LinkId == attempt.LinkId).Select(e => e.Change), Has.Some.AnyOf(LinkChange.Closed, LinkChange.Failed));
    }

    /// <summary>A member driven by hand: its signaling alone, which answers nothing unless the test does.</summary>
    private async Task<SignalingChannelBase> RawPeerAsync(string nodeId, string knows)
    {
        var peer = SignalingChannels.Create(new InProcessSignalingOptions { Hub = _hub }, nodeId, [EngineNode.OverlayId], null, _time);
        _owned.Add(peer);
        await peer.ConnectAsync();
        await SignalingBehaviourTests.WaitForPeerAsync(peer, EngineNode.OverlayId, knows);
        return peer;
    }

    /// <summary>A node whose own attempt to link to a raw peer is under way (its offer stays unanswered).</summary>
    private async Task<(EngineNode Node, SignalingChannelBase Peer, LinkEvent Attempt)> AttemptToRawPeerAsync(string nodeId, string peerId)
    {
        var node = await NodeAsync(nodeId);
        node.Start();
        var peer = await RawPeerAsync(peerId, nodeId);
        return (node, peer, await node.WaitForAsync(Change(LinkChange.Connecting), "the node's own attempt"));
    }

    private static LinkOffer AnyOffer()
    {
        var ice = IceCredentials.NewRandom();
        var fingerprint = "sha-256 " + string.Join(':', Enumerable.Range(0, 32).Select(i => i.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));
        return new LinkOffer(EngineNode.OverlayId, Guid.NewGuid().ToString("N"), ice.Ufrag, ice.Password, [], fingerprint, "02:00:00:00:00:99");
    }

    [Test]
    public async Task Our_attempt_gives_way_to_a_higher_peer_s_request_that_crosses_it()
    {
        var (lowId, highId) = TwoIds();
        var (node, peer, mine) = await AttemptToRawPeerAsync(lowId, highId);

        var response = await peer.RequestAsync(lowId, new EdgeRequest(EngineNode.OverlayId, EdgeTypes.Format(LinkRoles.Successor)));

        Assert.That(response, Is.TypeOf<EdgeResponse>().With.Property(nameof(EdgeResponse.Accepted)).True);
        var closed = await node.WaitForAsync(Change(LinkChange.Closed, mine.LinkId), "the node's own attempt to give way");
        Assert.That(closed.Reason, Is.EqualTo("collision: the peer's request won"));
        Assert.That(await node.LinksAsync(), Is.Empty, "the place is kept for the peer's offer");
    }

    /// <summary>
    /// The first signal of a node's attempt is its offer, which asks for the edge itself (one signaling round trip less
    /// than an edge request before it); a node that takes such an offer answers it as it would after an edge request.
    /// </summary>
    [Test]
    public async Task An_attempt_starts_with_an_offer_that_asks_for_the_edge()
    {
        var (lowId, highId) = TwoIds();
        var node = await NodeAsync(highId);
        node.Start();
        var peer = await RawPeerAsync(lowId, highId);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var signal in peer.ReadIncomingAsync(cts.Token))
        {
            Assert.That(signal.Message, Is.TypeOf<LinkOffer>(), "no edge request before the offer");
            Assert.That(((LinkOffer)signal.Message).EdgeType, Is.Not.Null.And.Not.Empty, "the offer carries the edge kind");
            break;
        }
    }

    [Test]
    public async Task An_offer_that_asks_for_the_edge_is_answered_without_an_edge_request()
    {
        var (lowId, highId) = TwoIds();
        var node = await NodeAsync(lowId);
        node.Start();
        var asker = await RawPeerAsync(highId, lowId);
        var reply = await asker.RequestAsync(lowId, AnyOffer() with { EdgeType = EdgeTypes.Format(LinkRoles.LongDistance) });
        Assert.That(reply, Is.TypeOf<LinkAnswer>(), (reply as LinkReject)?.Reason);
    }

    [Test]
    public async Task A_lower_peer_s_offer_loses_to_our_own_attempt()
    {
        var (lowId, highId) = TwoIds();
        var (node, peer, mine) = await AttemptToRawPeerAsync(highId, lowId);

        var reply = await peer.RequestAsync(highId, AnyOffer());

        Assert.That(reply, Is.TypeOf<LinkReject>().With.Property(nameof(LinkReject.Reason)).EqualTo("collision: the higher node ID's link wins"));
        var link = (await node.LinksAsync()).Single();
        Assert.That((link.LinkId, link.Initiator, link.State), Is.EqualTo((mine.LinkId, true, LinkChange.Connecting)));
    }

    /// <summary>
    /// A member offering link after link (each would replace the last; each costs a path and a handshake) gets three
    /// answered, the rest refused as too fast and counted, and one more after a second.
    /// </summary>
    [Test]
    public async Task A_peer_offering_twenty_links_gets_three_then_one_a_second()
    {
        var (lowId, highId) = TwoIds();
        var node = await NodeAsync(lowId);
        node.Start();
        // Above the node's ID, the offers win over the node's own attempt to link to this member.
        var hostile = await RawPeerAsync(highId, lowId);
        Task<SignalMessage> OfferAsync() => hostile.RequestAsync(lowId, AnyOffer());

        var replies = new List<SignalMessage>();
        for (var i = 0; i < 20; i++) replies.Add(await OfferAsync());

        Assert.That(replies.Take(LinkManager.NewLinkBurst), Has.All.TypeOf<LinkAnswer>(), string.Join("; ", replies.OfType<LinkReject>().Select(r => r.Reason)));
        Assert.That(replies.Skip(LinkManager.NewLinkBurst), Has.All.TypeOf<LinkReject>());
        Assert.That(replies.OfType<LinkReject>(), Has.All.Property(nameof(LinkReject.Reason)).Contains("too fast"));
        var status = await node.Engine.GetStatusAsync();
        Assert.That(status.RefusedSignals, Is.EqualTo(20 - LinkManager.NewLinkBurst));
        Assert.That(status.Links.Count(l => l.PeerNodeId == highId), Is.EqualTo(1));

        _time.Advance(LinkManager.NewLinkInterval);
        Assert.That(await OfferAsync(), Is.TypeOf<LinkAnswer>(), "a second later the next offer is answered");
        Assert.That(await OfferAsync(), Is.TypeOf<LinkReject>(), "and only one");
    }

    [Test]
    public async Task A_silent_link_is_restarted_by_its_initiator_and_comes_back_with_the_same_ID()
    {
        // No second restart while the first one's answer is on its way back.
        var timings = new LinkTimings { RestartInterval = TimeSpan.FromSeconds(20) };
        var (low, high) = await TwoNodesAsync(timings);
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");
        var pairings = _paths.Pairings;

        _paths.CutAll();
        _time.Advance(timings.DeadPeerTimeout + timings.KeepaliveInterval);
        await high.WaitForAsync(Change(LinkChange.Down, up.LinkId), "the initiator to see the link down");
        await _paths.WaitForPairingsAsync(pairings + 1); // the restart offer was answered and ICE paired the paths again
        _time.Advance(timings.KeepaliveInterval); // keepalives cross the new path

        var back = await high.WaitForAsync(e => e.Change == LinkChange.Up && e.LinkId == up.LinkId && high.Events.Count(u => u.Change == LinkChange.Up) > 1, "the link up again");
        await low.WaitForAsync(e => e.Change == LinkChange.Up && e.LinkId == up.LinkId && low.Events.Count(u => u.Change == LinkChange.Up) > 1, "the link up again at the lower node");
        var link = (await high.LinksAsync()).Single();
        Assert.Multiple(() =>
        {
            Assert.That(back.LinkId, Is.EqualTo(up.LinkId));
            Assert.That(link.LinkId, Is.EqualTo(up.LinkId));
            Assert.That(link.State, Is.EqualTo(LinkChange.Up));
            Assert.That(_paths.Paths.Where(p => p.SelectedPair is not null).Select(p => p.Restarts), Has.All.EqualTo(1), "both ends restarted ICE once");
            Assert.That(high.Events.Concat(low.Events).Where(e => e.Change is LinkChange.Closed or LinkChange.Failed && e.LinkId == up.LinkId), Is.Empty);
        });
    }

    [Test]
    public async Task ICE_restart_offers_share_the_peer_s_budget_and_those_past_it_go_unanswered()
    {
        var (lowId, highId) = TwoIds();
        var node = await NodeAsync(lowId);
        node.Start();
        var hostile = await RawPeerAsync(highId, lowId);
        var first = AnyOffer();
        Assert.That(await hostile.RequestAsync(lowId, first), Is.TypeOf<LinkAnswer>());

        // Restart offers for that link, one after another: each would cost new checks and perhaps a TURN allocation.
        var restarts = Enumerable.Range(0, 19).Select(_ => hostile.RequestAsync(lowId, AnyOffer() with { LinkId = first.LinkId })).ToArray();
        // A new offer after them is refused as too fast; once it is, every restart before it was handled (in order).
        var probe = await hostile.RequestAsync(lowId, AnyOffer());

        Assert.That(probe, Is.TypeOf<LinkReject>().With.Property(nameof(LinkReject.Reason)).Contains("too fast"));
        // The burst's remaining two restarts were handled (this link is still being set up, which they are told); the rest
        // get no answer at all.
        var handled = await Task.WhenAll(restarts.Take(LinkManager.NewLinkBurst - 1)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(handled, Has.All.TypeOf<LinkReject>().With.Property(nameof(LinkReject.Reason)).Contains("still being set up"));
        Assert.That(restarts.Skip(LinkManager.NewLinkBurst - 1).Where(r => r.IsCompleted), Is.Empty);
        Assert.That((await node.Engine.GetStatusAsync()).RefusedSignals, Is.EqualTo(19 - (LinkManager.NewLinkBurst - 1) + 1));
        Assert.That((await node.LinksAsync()).Single().LinkId, Is.EqualTo(first.LinkId), "the link is not ended by the refusals");
    }

    /// <summary>Signaling tells <paramref name="at"/> that <paramref name="peer"/> went away, as a server restart tells everyone.</summary>
    private static async Task PresenceGoesAsync(EngineNode at, EngineNode peer)
    {
        ((InProcessSignalingChannel)at.Signaling).DeliverPresence(peer.Signaling.LocalAddress!, null);
        await at.LinksAsync(); // the engine's queue has taken the news
    }

    [Test]
    public async Task A_working_link_outlives_the_peer_s_presence_and_ends_once_it_falls_silent_too()
    {
        var timings = new LinkTimings();
        var (low, high) = await TwoNodesAsync(timings);
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");

        await PresenceGoesAsync(high, low);
        for (var i = 0; i < 10; i++) _time.Advance(timings.KeepaliveInterval); // 20 s of keepalives that pass

        Assert.That((await high.LinksAsync()).Select(l => (l.LinkId, l.State)), Is.EqualTo(new[] { (up.LinkId, LinkChange.Up) }));
        Assert.That(high.Events.Where(e => e.Change is LinkChange.Closed or LinkChange.Failed), Is.Empty, "presence is advisory");

        // Now the link falls silent as well, and no path comes back: both say the peer is gone.
        _paths.Unreachable = true;
        _paths.CutAll();
        _time.Advance(timings.DeadPeerTimeout + timings.KeepaliveInterval + timings.TickInterval);
        var closed = await high.WaitForAsync(Change(LinkChange.Closed, up.LinkId), "the link ended");
        Assert.That(closed.Reason, Is.EqualTo("silent, and signaling no longer lists the peer"));
    }

    [Test]
    public async Task A_peer_that_died_is_gone_after_one_and_a_half_keepalive_intervals_of_silence_not_the_dead_peer_timeout()
    {
        var timings = new LinkTimings();
        var (low, high) = await TwoNodesAsync(timings);
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");

        // A crash: the link falls silent and the dead node's signaling connection closes with it.
        _paths.Unreachable = true;
        _paths.CutAll();
        await PresenceGoesAsync(high, low);
        var step = TimeSpan.FromMilliseconds(250);
        var elapsed = TimeSpan.Zero;
        while (!high.Events.Any(Change(LinkChange.Closed, up.LinkId)) && elapsed < timings.DeadPeerTimeout)
        {
            _time.Advance(step);
            elapsed += step;
            await high.LinksAsync(); // the tick that fell due has run
        }

        var closed = await high.WaitForAsync(Change(LinkChange.Closed, up.LinkId), "the link ended");
        Assert.That(closed.Reason, Is.EqualTo("silent, and signaling no longer lists the peer"));
        Assert.That(elapsed, Is.LessThanOrEqualTo(timings.KeepaliveInterval * 1.5 + timings.TickInterval + step),
            "ended by the tick after 1.5 keepalive intervals of silence, long before the dead-peer timeout");
        Assert.That(high.Events.Where(e => e.LinkId == up.LinkId && e.Change == LinkChange.Down), Is.Empty, "never declared down first");
    }

    [Test]
    public async Task A_member_taken_off_the_roster_loses_its_link_at_once()
    {
        var (low, high) = await TwoNodesAsync();
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");

        _hub.RemoveFromGroup(SignalingChannels.InProcessGroup, low.NodeId);

        var closed = await high.WaitForAsync(Change(LinkChange.Closed, up.LinkId), "the link ended by the revocation");
        Assert.That(closed.Reason, Is.EqualTo("the peer is no longer a member of the overlay"));
        Assert.That(await high.LinksAsync(), Is.Empty);
    }

    [Test]
    public async Task A_member_revoked_after_its_presence_went_loses_its_link_too()
    {
        var (low, high) = await TwoNodesAsync();
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");
        await PresenceGoesAsync(high, low);
        Assert.That((await high.LinksAsync()).Single().State, Is.EqualTo(LinkChange.Up));

        _hub.RemoveFromGroup(SignalingChannels.InProcessGroup, low.NodeId); // while it was not listed

        var closed = await high.WaitForAsync(Change(LinkChange.Closed, up.LinkId), "the link ended by the revocation");
        Assert.That(closed.Reason, Is.EqualTo("the peer is no longer a member of the overlay"));
    }

    [Test]
    public async Task A_node_whose_key_does_not_own_the_node_id_it_claims_cannot_complete_a_link()
    {
        var (honestId, claimedId) = TwoIds();
        var honest = await NodeAsync(honestId);
        // Another member starts a node under claimedId (a copied configuration) with a key of its own.
        var otherKey = NodeIdentity.CreateEphemeral(); // the impostor node owns and disposes it
        var impostor = await EngineNode.ConnectAsync(_hub, claimedId, _time, _paths, identity: otherKey);
        _owned.Add(impostor);
        honest.Start();
        impostor.Start();

        // Whichever end is the DTLS server, the honest end refuses the key: it reports why, or the impostor ends the
        // attempt first with the alert the honest end sent it.
        var refused = await honest.WaitForAsync(e => e.PeerNodeId == claimedId && e.Change is LinkChange.Failed or LinkChange.Closed
            && (e.Reason.Contains("owns node ID", StringComparison.Ordinal) || e.Reason.Contains("bad_certificate", StringComparison.Ordinal)),
            "the link to the impostor refused for its key");
        if (refused.Change == LinkChange.Failed) Assert.That(refused.Reason, Does.Contain($"owns node ID {otherKey.NodeId}, not {claimedId}"));
        Assert.That(honest.Events.Concat(impostor.Events).Where(e => e.Change == LinkChange.Up), Is.Empty, "no link came up at either end");
    }

    [Test]
    public async Task A_stopping_node_says_goodbye_over_the_link_and_its_peer_ends_the_link_at_once_without_signaling()
    {
        var (low, high) = await TwoNodesAsync();
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");
        await low.Signaling.DisposeAsync();          // its signaling is gone: no teardown can travel there
        await high.LinksAsync();                     // its presence went (advisory: the link stays)
        Assert.That((await high.LinksAsync()).Single().State, Is.EqualTo(LinkChange.Up));

        await low.StopEngineAsync();                 // no time passes: no keepalive could have noticed

        var closed = await high.WaitForAsync(Change(LinkChange.Closed, up.LinkId), "the link ended by the goodbye");
        Assert.That(closed.Reason, Is.EqualTo("the peer said goodbye"));
    }

    [Test]
    public async Task A_link_the_peer_tears_down_is_closed_with_the_peer_s_reason()
    {
        var (low, high) = await TwoNodesAsync();
        var up = await high.WaitForAsync(Change(LinkChange.Up), "the link up");
        await low.WaitForAsync(Change(LinkChange.Up, up.LinkId), "the link up at the lower node");

        _paths.CutAll();             // the goodbye over the link is lost: signaling's teardown still tells
        await low.StopEngineAsync(); // tells its peers, as a node shutting down does

        var closed = await high.WaitForAsync(Change(LinkChange.Closed, up.LinkId), "the link closed by the peer");
        Assert.That(closed.Reason, Is.EqualTo("closed by the peer: the node is shutting down"));
        Assert.That((await high.LinksAsync()).Where(l => l.LinkId == up.LinkId), Is.Empty);
        Assert.That(high.Engine.Work.Faults, Is.Zero);
    }

    [Test]
    public async Task A_peer_ends_only_the_link_it_names()
    {
        var (lowId, highId) = TwoIds();
        var (node, peer, mine) = await AttemptToRawPeerAsync(lowId, highId);

        await peer.SendAsync(lowId, new LinkTeardown(EngineNode.OverlayId, "another-link", "not this one"));
        await peer.SendAsync(lowId, new LinkTeardown(EngineNode.OverlayId, mine.LinkId, "bye"));

        var closed = await node.WaitForAsync(e => e.Change is LinkChange.Closed or LinkChange.Failed, "the named link to end");
        Assert.That((closed.LinkId, closed.Reason), Is.EqualTo((mine.LinkId, "closed by the peer: bye")));
    }

    [Test]
    public async Task A_link_whose_paths_never_meet_fails_at_the_setup_timeout()
    {
        _paths.Unreachable = true;
        var (low, high) = await TwoNodesAsync();
        var connecting = await high.WaitForAsync(Change(LinkChange.Connecting), "the higher node to ask for the link");
        await low.WaitForAsync(Change(LinkChange.Connecting, connecting.LinkId), "the lower node to answer it");
        await _paths.WaitForStartsAsync(2); // the answer reached the initiator: no signaling request is left to time out
        var timings = new LinkTimings();

        _time.Advance(timings.SetupTimeout - TimeSpan.FromSeconds(1));
        Assert.That(high.Events.Where(e => e.LinkId == connecting.LinkId).Select(e => e.Change), Has.None.EqualTo(LinkChange.Failed),
            "not before the timeout");
        _time.Advance(TimeSpan.FromSeconds(1));

        var failed = await high.WaitForAsync(Change(LinkChange.Failed, connecting.LinkId), "the attempt to fail");
        Assert.That(failed.Reason, Is.EqualTo($"not up within {timings.SetupTimeout.TotalSeconds:0} s (Negotiating)"));
        // The answering end gives up at its own timeout, or hears the initiator's teardown first.
        await low.WaitForAsync(e => e.LinkId == connecting.LinkId && e.Change is LinkChange.Failed or LinkChange.Closed, "the answering end to give up too");
    }
}
