using NUnit.Framework;
using System.Net;
using Overlay.Core.Tests.Signaling;
using Overlay.Engine;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Switching;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Whole nodes in one process: in-process signaling, in-memory NICs, real links on this machine. The ring forms,
/// every pair of hosts reaches each other through the overlay (ARP + ping), a broadcast reaches every host once,
/// and a departed node's neighbours re-form the ring.
/// </summary>
[TestFixture]
public class OverlayNodeTests
{
    private static readonly TimeSpan Formation = TimeSpan.FromSeconds(30);

    [Test]
    public async Task FiveNodesFormARingAndEveryPairPings()
    {
        await using var cluster = new OverlayCluster();
        for (var i = 0; i < 5; i++) await cluster.AddAsync();
        await cluster.WaitAsync(() => cluster.RingFormedAsync(perNode: 2), Formation, "every node to have two links up at both ends");

        await cluster.PingAllPairsAsync();

        await cluster.Hosts[0].BroadcastProbeAsync(7);
        await cluster.WaitForProbesAsync(TimeSpan.FromSeconds(10));
        await cluster.PingAllPairsAsync(); // duplicates of the broadcast, if any, would have arrived meanwhile
        foreach (var host in cluster.Hosts.Skip(1))
            Assert.That(host.ProbesReceived.Values.Sum(), Is.EqualTo(1), $"{host.Address} got the broadcast exactly once");

        var status = await cluster.Nodes[0].GetStatusAsync();
        var overlay = status.Overlays.Single();
        Assert.Multiple(() =>
        {
            Assert.That(status.Signaling, Is.EqualTo(SignalingState.Connected));
            Assert.That(overlay.Members, Is.EqualTo(5));
            Assert.That(overlay.Links.Where(l => l.State == LinkChange.Up).Select(l => l.Path), Has.All.Not.Null);
            Assert.That(overlay.Links.Where(l => l.State == LinkChange.Up).Sum(l => l.Statistics!.FramesReceived), Is.GreaterThan(0));
            Assert.That(overlay.Switch.Delivered, Is.GreaterThan(0));
        });
        var (perLoop, sockets) = await cluster.Nodes[0].Overlays[0].Engine.CountLoopSocketsAsync();
        Assert.That(sockets, Is.GreaterThanOrEqualTo(2));
        Assert.That(perLoop.Sum(), Is.EqualTo(sockets), "every link socket is served by one of the node's event loops");
        var ups = cluster.Events.Where(e => e.Change == LinkChange.Up).ToArray();
        TestContext.Out.WriteLine($"{ups.Length} link-up events; setup time median {ups.Select(e => e.Elapsed.TotalMilliseconds).Order().ElementAt(ups.Length / 2):0} ms, max {ups.Max(e => e.Elapsed.TotalMilliseconds):0} ms");
    }

    /// <summary>
    /// A node with two event loops puts its two links on different loops, and both carry frames at the same time: each
    /// link's datagrams are read, opened and switched by its own loop's thread.
    /// </summary>
    [Test]
    public async Task A_nodes_links_are_spread_over_its_event_loops_and_carry_frames_at_once()
    {
        await using var cluster = new OverlayCluster();
        for (var i = 0; i < 3; i++) await cluster.AddAsync(configureNode: b => b.WithDataPath(new DataPathOptions { EventLoops = 2 }));
        await cluster.WaitAsync(() => cluster.RingFormedAsync(perNode: 2), Formation, "every node to have two links up at both ends");
        var engine = cluster.Nodes[0].Overlays[0].Engine;
        var (perLoop, sockets) = await engine.CountLoopSocketsAsync();
        Assert.That(perLoop, Is.EqualTo(new[] { 1, 1 }), $"node 0's {sockets} link sockets, per loop");

        static long Received(OverlayNodeStatus status) => status.Overlays[0].Links.Where(l => l.State == LinkChange.Up).Min(l => l.Statistics!.FramesReceived);
        var before = Received(await cluster.Nodes[0].GetStatusAsync());
        const int Pings = 100;
        await Task.WhenAll(cluster.Hosts.Skip(1).Select(host => Task.Run(async () =>
        {
            for (var i = 0; i < Pings; i++) await host.PingAsync(cluster.Hosts[0].Address, TimeSpan.FromSeconds(5));
        })));
        Assert.That(Received(await cluster.Nodes[0].GetStatusAsync()) - before, Is.GreaterThanOrEqualTo(Pings), "each link brought at least its pings");
    }

    /// <summary>
    /// A member that offers link after link (each would replace the last, each costs a socket and a handshake) gets a
    /// burst answered and then one a second; the rest are refused with a reason and counted, and the node keeps one link
    /// to it at most.
    /// </summary>
    [Test]
    public async Task A_member_offering_link_after_link_gets_a_burst_then_one_a_second()
    {
        await using var cluster = new OverlayCluster();
        var node = await cluster.AddAsync();
        // The node links to every member it sees, so its own attempt and the offers meet: above the node's ID, they win.
        var hostileId = NodeId.NewRandom().ToString();
        while (string.CompareOrdinal(hostileId, node.NodeId) <= 0) hostileId = NodeId.NewRandom().ToString();
        await using var hostile = SignalingChannels.Create(new InProcessSignalingOptions { Hub = cluster.Hub }, hostileId, [OverlayCluster.OverlayId]);
        await hostile.ConnectAsync();
        await SignalingBehaviourTests.WaitForPeerAsync(hostile, OverlayCluster.OverlayId, node.NodeId);
        var fingerprint = "sha-256 " + string.Join(':', Enumerable.Range(0, 32).Select(i => i.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));
        async Task<SignalMessage> OfferAsync()
        {
            var ice = IceCredentials.NewRandom();
            return await hostile.RequestAsync(node.NodeId,
                new LinkOffer(OverlayCluster.OverlayId, Guid.NewGuid().ToString("N"), ice.Ufrag, ice.Password, [], fingerprint, "02:00:00:00:00:99"));
        }

        var replies = new List<SignalMessage>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 20; i++) replies.Add(await OfferAsync());
        var refilled = (int)(clock.Elapsed / LinkManager.NewLinkInterval); // a slow machine earns one more per second taken
        var burst = LinkManager.NewLinkBurst;
        Assert.That(replies.Take(burst), Has.All.TypeOf<LinkAnswer>(), string.Join("; ", replies.OfType<LinkReject>().Select(r => r.Reason)));
        var answered = replies.Count(r => r is LinkAnswer);
        Assert.That(answered, Is.InRange(burst, burst + refilled));
        Assert.That(replies.OfType<LinkReject>(), Has.All.Property(nameof(LinkReject.Reason)).Contains("too fast"));
        var overlay = (await node.GetStatusAsync()).Overlays[0];
        Assert.That(overlay.RefusedSignals, Is.EqualTo(20 - answered));
        Assert.That(overlay.Links.Count(l => l.PeerNodeId == hostileId), Is.EqualTo(1));

        // The bound is a rate, not a ban: a second later the next offer is answered (and replaces the first link).
        await Task.Delay(LinkManager.NewLinkInterval + TimeSpan.FromMilliseconds(100));
        Assert.That(await OfferAsync(), Is.TypeOf<LinkAnswer>());
    }

    [Test]
    public async Task WhenANodeLeavesTheRestReformTheRing()
    {
        await using var cluster = new OverlayCluster();
        for (var i = 0; i < 5; i++) await cluster.AddAsync();
        await cluster.WaitAsync(() => cluster.RingFormedAsync(perNode: 2), Formation, "the ring of five");
        var departed = cluster.Nodes[2].NodeId;

        await cluster.RemoveAsync(2);
        await cluster.WaitAsync(async () =>
        {
            foreach (var node in cluster.Nodes)
                if ((await node.GetStatusAsync()).Overlays[0].Links.Any(l => l.PeerNodeId == departed)) return false;
            return await cluster.RingFormedAsync(perNode: 2);
        }, Formation, "the ring of four without the departed node");

        await cluster.PingAllPairsAsync();
        Assert.That(cluster.Events.Where(e => e.PeerNodeId == departed && e.Change == LinkChange.Closed), Is.Not.Empty,
            "links to the departed node were closed");
    }

    [Test]
    public async Task DisposeTearsDownLinksAndDevices()
    {
        await using var cluster = new OverlayCluster();
        var a = await cluster.AddAsync();
        var b = await cluster.AddAsync();
        await cluster.WaitAsync(() => cluster.RingFormedAsync(perNode: 1), Formation, "the link between two nodes");

        await cluster.RemoveAsync(0);
        await cluster.WaitAsync(async () => (await b.GetStatusAsync()).Overlays[0].Links.Count == 0, Formation, "the survivor to drop the link");
        // The survivor learned it from the departing node, not from keepalives falling silent: by its goodbye over the
        // link or its teardown through signaling, whichever came first.
        Assert.That(cluster.Events.Where(e => e.PeerNodeId == a.NodeId && e.Change == LinkChange.Closed).Select(e => e.Reason),
            Has.Some.Matches<string>(r => r == "the peer said goodbye" || r?.StartsWith("closed by the peer", StringComparison.Ordinal) == true));
        Assert.That(a.SignalingState, Is.EqualTo(SignalingState.Closed));
    }
}
