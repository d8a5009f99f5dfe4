using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Switching;

namespace Overlay.Core.Tests.Signaling;

/// <summary>
/// Behaviour every signaling implementation must show, run against the in-process hub and against XMPP
/// through a real prosody. Subclasses create connected channels for roster members (accounts node1..node8
/// in one shared group) and for an outsider account in no group.
/// </summary>
public abstract class SignalingBehaviourTests
{
    internal static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);
    private readonly List<ISignalingChannel> _channels = [];

    /// <summary>
    /// Creates and connects the channel of member account node<paramref name="index"/> (node1..node8 share roster group
    /// "overlay1"; node5..node8 also share "overlay2"), its overlays' members limited to <paramref name="overlayGroups"/>.
    /// </summary>
    private protected abstract Task<SignalingChannelBase> CreateMemberAsync(int index, string nodeId, IReadOnlyList<string> overlays,
        IReadOnlyDictionary<string, IReadOnlyList<string>>? overlayGroups = null);

    /// <summary>Creates and connects the channel of the outsider account (in no roster group).</summary>
    private protected abstract Task<SignalingChannelBase> CreateOutsiderAsync(string nodeId, IReadOnlyList<string> overlays);

    /// <summary>Sends a raw payload from one channel's account to an address, bypassing the typed API.</summary>
    private protected abstract Task SendRawAsync(SignalingChannelBase from, string toAddress, string payload);

    private protected T Track<T>(T channel) where T : ISignalingChannel
    {
        _channels.Add(channel);
        return channel;
    }

    [TearDown]
    public async Task DisposeChannels()
    {
        foreach (var c in _channels) await c.DisposeAsync();
        _channels.Clear();
    }

    internal static async Task WaitForPeerAsync(ISignalingChannel channel, string overlay, string nodeId, bool present = true)
    {
        using var cts = new CancellationTokenSource(Wait);
        var watch = channel.WatchPeersAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        try
        {
            while (channel.GetPeers(overlay).ContainsKey(nodeId) != present)
            {
                try
                {
                    if (!await watch.MoveNextAsync()) Assert.Fail("peer stream ended");
                }
                catch (OperationCanceledException)
                {
                    Assert.Fail($"{channel.NodeId} did not see {nodeId} {(present ? "join" : "leave")} {overlay} within {Wait}");
                }
            }
        }
        finally
        {
            await watch.DisposeAsync();
        }
    }

    protected static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        // Polls a counter the code under test updates; there is no event for drops by design.
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out waiting for {what}");
            await Task.Delay(20);
        }
    }

    private protected static LinkOffer SampleOffer(string overlay, string linkId) => new(
        overlay, linkId, "ufragA1", "passwordpasswordpassword",
        ["candidate:1 1 udp 2130706431 fe80::1 5000 typ host", "candidate:2 1 udp 1694498815 198.51.100.21 40000 typ srflx raddr 10.1.0.2 rport 5000"],
        "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
        "02:00:00:00:00:01");

    /// <summary>Answers every offer on <paramref name="channel"/> with an answer echoing the link ID.</summary>
    private protected static Task AnswerOffersAsync(ISignalingChannel channel, CancellationToken ct) => Task.Run(async () =>
    {
        try
        {
            await foreach (var incoming in channel.ReadIncomingAsync(ct))
            {
                switch (incoming.Message)
                {
                    case LinkOffer o:
                        await incoming.RespondAsync(new LinkAnswer(o.OverlayId, o.LinkId, "ufragB2", "otherpasswordotherpassword",
                            ["candidate:1 1 udp 2130706431 10.2.0.2 6000 typ host"], "sha-256 11:22", "02:00:00:00:00:02"), ct);
                        break;
                    case EdgeRequest e:
                        await incoming.RespondAsync(new EdgeResponse(e.OverlayId, e.EdgeType == "successor", e.EdgeType == "successor" ? "" : "degree limit"), ct);
                        break;
                }
            }
        }
        catch (OperationCanceledException) { }
    }, ct);

    [Test]
    public async Task A_member_is_a_peer_only_in_the_overlays_its_roster_groups_belong_to()
    {
        string one = Switching.NodeId.NewRandom().ToString(), five = Switching.NodeId.NewRandom().ToString(), six = Switching.NodeId.NewRandom().ToString();
        // node5 serves A (group overlay1: node1..node8) and B (group overlay2: node5..node8) through one account.
        var node5 = Track(await CreateMemberAsync(5, five, ["ovlA", "ovlB"],
            new Dictionary<string, IReadOnlyList<string>> { ["ovlA"] = ["overlay1"], ["ovlB"] = ["overlay2"] }));
        var node1 = Track(await CreateMemberAsync(1, one, ["ovlA", "ovlB"]));
        Track(await CreateMemberAsync(6, six, ["ovlA", "ovlB"]));

        await WaitForPeerAsync(node5, "ovlA", one);
        await WaitForPeerAsync(node5, "ovlA", six);
        await WaitForPeerAsync(node5, "ovlB", six);
        Assert.That(node5.GetPeers("ovlB"), Does.Not.ContainKey(one), "node1 announced B, but it is not in B's group");
        var refusedAnnouncements = node5.Counters.DroppedNotInOverlayGroup;
        Assert.That(refusedAnnouncements, Is.GreaterThanOrEqualTo(1));

        // node1 (which lists node5 in B: it names no groups) asks for a link into B, then into A. Its messages arrive
        // in order, so once A's is answered, B's has been refused.
        using var cts = new CancellationTokenSource(Wait);
        var answering = AnswerOffersAsync(node5, cts.Token);
        var intoB = node1.RequestAsync(five, new EdgeRequest("ovlB", "successor"), TimeSpan.FromSeconds(3), cts.Token);
        var intoA = await node1.RequestAsync(five, new EdgeRequest("ovlA", "successor"), Wait, cts.Token);

        Assert.That(intoA, Is.InstanceOf<EdgeResponse>());
        Assert.That(node5.Counters.DroppedNotInOverlayGroup - refusedAnnouncements, Is.EqualTo(1), "the request into B was dropped");
        Assert.That(node5.Counters.Accepted, Is.EqualTo(1), "only the request into A reached the engine");
        Assert.That(async () => await intoB, Throws.Exception, "B's request gets no answer");
        await cts.CancelAsync();
        await answering;
    }

    [Test]
    public async Task A_node_id_another_account_holds_is_refused_until_that_account_goes()
    {
        string id = Switching.NodeId.NewRandom().ToString(), observerId = Switching.NodeId.NewRandom().ToString();
        var observer = Track(await CreateMemberAsync(3, observerId, ["ovl1"]));
        var owner = await CreateMemberAsync(1, id, ["ovl1"]);
        await WaitForPeerAsync(observer, "ovl1", id);
        var ownerAddress = observer.GetPeers("ovl1")[id];

        // Another member's node claims the same ID (a copied configuration file, or an impostor).
        var claimant = Track(await CreateMemberAsync(2, id, ["ovl1"]));
        await WaitUntilAsync(() => observer.Counters.DroppedNodeIdClaimed == 1, "the claim to be refused");
        Assert.That(observer.GetPeers("ovl1")[id], Is.EqualTo(ownerAddress), "the owner keeps its node ID");
        // Both ends of the conflict are told, so that the one refused can say why in its log and status.
        await WaitUntilAsync(() => claimant.NodeIdConflicts.Contains(ownerAddress), "the claimant to see the owner announce its ID");
        await WaitUntilAsync(() => owner.NodeIdConflicts.Contains(claimant.LocalAddress!), "the owner to see the claimant announce its ID");
        Assert.That(observer.NodeIdConflicts, Is.Empty, "a third member has no conflict of its own");

        // Once the owner is gone, the remembered claim is listed, and the claimant's conflict is over.
        await owner.DisposeAsync();
        await WaitForAddressAsync(observer, "ovl1", id, claimant.LocalAddress!);
        await WaitUntilAsync(() => claimant.NodeIdConflicts.Count == 0, "the conflict to end with the owner's presence");
    }

    [Test]
    public async Task An_account_has_one_node_per_overlay()
    {
        string first = Switching.NodeId.NewRandom().ToString(), second = Switching.NodeId.NewRandom().ToString();
        var observer = Track(await CreateMemberAsync(3, Switching.NodeId.NewRandom().ToString(), ["ovl1"]));
        Track(await CreateMemberAsync(1, first, ["ovl1"]));
        await WaitForPeerAsync(observer, "ovl1", first);

        Track(await CreateMemberAsync(1, second, ["ovl1"])); // the same account, another resource, another node ID
        await WaitUntilAsync(() => observer.Counters.DroppedNodeIdClaimed == 1, "the second node to be refused");

        Assert.That(observer.GetPeers("ovl1").Keys, Does.Contain(first).And.Not.Contain(second));
    }

    private static async Task WaitForAddressAsync(ISignalingChannel channel, string overlay, string nodeId, string address)
    {
        using var cts = new CancellationTokenSource(Wait);
        await using var watch = channel.WatchPeersAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        while (!(channel.GetPeers(overlay).TryGetValue(nodeId, out var current) && current == address))
        {
            try
            {
                if (!await watch.MoveNextAsync()) Assert.Fail("peer stream ended");
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"{nodeId} was not listed at {address} within {Wait}");
            }
        }
    }

    [Test]
    public async Task Two_members_discover_each_other_and_complete_an_offer_answer_round()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        var bob = Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);
        await WaitForPeerAsync(bob, "ovl1", a);
        Assert.That(alice.GetPeers("ovl1")[b], Is.EqualTo(bob.LocalAddress));

        using var cts = new CancellationTokenSource(Wait);
        var answering = AnswerOffersAsync(bob, cts.Token);
        var offer = SampleOffer("ovl1", "link-1");
        var response = await alice.RequestAsync(b, offer, Wait);

        var answer = response as LinkAnswer;
        Assert.That(answer, Is.Not.Null, $"expected an answer, got {response}");
        Assert.Multiple(() =>
        {
            Assert.That(answer!.LinkId, Is.EqualTo("link-1"));
            Assert.That(answer.IceUfrag, Is.EqualTo("ufragB2"));
            Assert.That(answer.Candidates, Is.EqualTo(new[] { "candidate:1 1 udp 2130706431 10.2.0.2 6000 typ host" }));
            Assert.That(answer.Mac, Is.EqualTo("02:00:00:00:00:02"));
            Assert.That(alice.Counters.ResponsesMatched, Is.EqualTo(1));
            Assert.That(bob.Counters.Accepted, Is.EqualTo(1));
            Assert.That(bob.Counters.Dropped, Is.Zero);
        });
        await cts.CancelAsync();
        await answering;
    }

    [Test]
    public async Task The_offer_arrives_with_every_field_and_the_sender_node_id()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        var bob = Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);
        await WaitForPeerAsync(bob, "ovl1", a);

        using var cts = new CancellationTokenSource(Wait);
        var offer = SampleOffer("ovl1", "link-7");
        var request = alice.RequestAsync(b, offer, Wait);
        await using var incoming = bob.ReadIncomingAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.That(await incoming.MoveNextAsync(), Is.True);
        var got = incoming.Current;
        Assert.Multiple(() =>
        {
            Assert.That(got.SenderNodeId, Is.EqualTo(a));
            Assert.That(got.SenderAddress, Is.EqualTo(alice.LocalAddress));
            Assert.That(got.ExpectsResponse, Is.True);
            var o = (LinkOffer)got.Message;
            Assert.That(o with { Candidates = offer.Candidates }, Is.EqualTo(offer));
            Assert.That(o.Candidates, Is.EqualTo(offer.Candidates));
        });
        await got.RespondAsync(new LinkReject("ovl1", "link-7", "busy"), cts.Token);
        Assert.That(await request, Is.EqualTo(new LinkReject("ovl1", "link-7", "busy")));
    }

    [Test]
    public async Task Edge_negotiation_is_accepted_or_rejected_with_a_reason()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        var bob = Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);
        using var cts = new CancellationTokenSource(Wait);
        var answering = AnswerOffersAsync(bob, cts.Token);

        var accepted = await alice.RequestAsync(b, new EdgeRequest("ovl1", "successor"), Wait);
        var rejected = await alice.RequestAsync(b, new EdgeRequest("ovl1", "longdistance"), Wait);

        Assert.That(accepted, Is.EqualTo(new EdgeResponse("ovl1", true, "")));
        Assert.That(rejected, Is.EqualTo(new EdgeResponse("ovl1", false, "degree limit")));
        await cts.CancelAsync();
        await answering;
    }

    [Test]
    public async Task Trickled_candidates_and_teardown_arrive_as_notifications()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        var bob = Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);

        await alice.SendAsync(b, new LinkCandidate("ovl1", "link-1", "candidate:3 1 udp 16777215 198.51.100.10 49200 typ relay raddr 198.51.100.21 rport 40000"));
        await alice.SendAsync(b, new LinkTeardown("ovl1", "link-1", "idle"));

        using var cts = new CancellationTokenSource(Wait);
        await using var incoming = bob.ReadIncomingAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.That(await incoming.MoveNextAsync(), Is.True);
        Assert.That(incoming.Current.Message, Is.EqualTo(new LinkCandidate("ovl1", "link-1", "candidate:3 1 udp 16777215 198.51.100.10 49200 typ relay raddr 198.51.100.21 rport 40000")));
        Assert.That(incoming.Current.ExpectsResponse, Is.False);
        Assert.That(await incoming.MoveNextAsync(), Is.True);
        Assert.That(incoming.Current.Message, Is.EqualTo(new LinkTeardown("ovl1", "link-1", "idle")));
    }

    [Test]
    public async Task An_outsider_cannot_get_an_offer_accepted()
    {
        string a = NodeId.NewRandom().ToString(), o = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        var outsider = Track(await CreateOutsiderAsync(o, ["ovl1"]));
        using var cts = new CancellationTokenSource(Wait);
        var answering = AnswerOffersAsync(alice, cts.Token);

        // The outsider never learns alice from presence; it addresses her directly, as an attacker would.
        Assert.That(outsider.GetPeers("ovl1"), Is.Empty);
        await Assert.ThrowsAsync<SignalingTimeoutException>(() =>
            outsider.RequestToAddressAsync(alice.LocalAddress!, a, SampleOffer("ovl1", "evil"), TimeSpan.FromSeconds(2), cts.Token));

        Assert.Multiple(() =>
        {
            Assert.That(alice.Counters.DroppedNotInRoster, Is.EqualTo(1));
            Assert.That(alice.Counters.Accepted, Is.Zero);
            Assert.That(alice.GetPeers("ovl1"), Does.Not.ContainKey(o));
        });
        await cts.CancelAsync();
        await answering;
    }

    [Test]
    public async Task Unknown_actions_unserved_overlays_malformed_and_spoofed_payloads_are_dropped_and_counted()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1", "ovl2"]));
        var bob = Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);
        var to = alice.LocalAddress!;

        // An action type from a future revision: dropped, counted, never handed to the engine.
        await SendRawAsync(bob, to, $$"""{"v":1,"type":"launch-missiles","node":"{{b}}","cid":"c1","overlay":"ovl1"}""");
        // An overlay alice does not serve.
        await SendRawAsync(bob, to, $$"""{"v":1,"type":"link-teardown","node":"{{b}}","cid":"c2","overlay":"other","link":"l","reason":""}""");
        // Broken JSON, and a valid shape missing a required field.
        await SendRawAsync(bob, to, """{"v":1,"type":"link-offer",""");
        await SendRawAsync(bob, to, $$"""{"v":1,"type":"link-offer","node":"{{b}}","cid":"c3","overlay":"ovl1"}""");
        // Bob claiming to be another node than the one he announced.
        await SendRawAsync(bob, to, $$"""{"v":1,"type":"link-teardown","node":"{{NodeId.NewRandom().ToString()}}","cid":"c4","overlay":"ovl1","link":"l","reason":""}""");
        // An overlay alice serves but bob never announced: bob is not a peer there.
        await SendRawAsync(bob, to, $$"""{"v":1,"type":"link-teardown","node":"{{b}}","cid":"c7","overlay":"ovl2","link":"l","reason":""}""");
        // A response nobody asked for.
        await SendRawAsync(bob, to, $$"""{"v":1,"type":"edge-response","node":"{{b}}","cid":"c5","overlay":"ovl1","accepted":true}""");
        // Unknown fields and a later minor revision are ignored: this one is accepted.
        await SendRawAsync(bob, to, $$"""{"v":3,"type":"link-teardown","node":"{{b}}","cid":"c6","overlay":"ovl1","link":"l","reason":"r","future":[1,2]}""");

        await WaitUntilAsync(() => alice.Counters.Accepted == 1 && alice.Counters.Dropped == 7, "seven drops and one accept");
        var c = alice.Counters;
        Assert.Multiple(() =>
        {
            Assert.That(c.DroppedUnknownType, Is.EqualTo(1));
            Assert.That(c.DroppedUnservedOverlay, Is.EqualTo(1));
            Assert.That(c.DroppedMalformed, Is.EqualTo(2));
            Assert.That(c.DroppedSpoofedNodeId, Is.EqualTo(1));
            Assert.That(c.DroppedUnknownPeer, Is.EqualTo(1));
            Assert.That(c.DroppedUnmatchedResponse, Is.EqualTo(1));
        });
        using var cts = new CancellationTokenSource(Wait);
        await using var incoming = alice.ReadIncomingAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.That(await incoming.MoveNextAsync(), Is.True);
        Assert.That(incoming.Current.Message, Is.EqualTo(new LinkTeardown("ovl1", "l", "r")));
    }

    [Test]
    public async Task A_peer_that_goes_away_leaves_the_table_and_requests_to_unknown_peers_fail_fast()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1", "ovl2"]));
        var bob = await CreateMemberAsync(2, b, ["ovl1"]);
        await WaitForPeerAsync(alice, "ovl1", b);
        Assert.That(alice.GetPeers("ovl2"), Is.Empty, "bob does not serve ovl2");

        await bob.DisposeAsync();
        await WaitForPeerAsync(alice, "ovl1", b, present: false);

        var ex = await Assert.ThrowsAsync<SignalingException>(() => alice.RequestAsync(b, SampleOffer("ovl1", "x"), TimeSpan.FromSeconds(1)));
        Assert.That(ex!.Message, Does.Contain("not in the peer table"));
        await Assert.ThrowsAsync<SignalingException>(() => alice.RequestAsync(b, SampleOffer("ovl9", "x"), TimeSpan.FromSeconds(1)));
    }

    [Test]
    public async Task An_unanswered_request_times_out_and_is_counted()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);

        await Assert.ThrowsAsync<SignalingTimeoutException>(() => alice.RequestAsync(b, new EdgeRequest("ovl1", "successor"), TimeSpan.FromMilliseconds(300)));
        Assert.That(alice.Counters.RequestsTimedOut, Is.EqualTo(1));
    }
}
