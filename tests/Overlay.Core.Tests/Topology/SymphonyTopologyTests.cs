using NUnit.Framework;
using Overlay.Topology;
using Overlay.Topology.Simulation;

namespace Overlay.Core.Tests.Topology;

public class SymphonyTopologyTests
{
    private sealed class Recorder : ILinkController
    {
        public List<(UInt128 Peer, LinkRoles Roles)> Connects { get; } = [];
        public List<UInt128> Disconnects { get; } = [];
        public void Connect(UInt128 peer, LinkRoles roles) => Connects.Add((peer, roles));
        public void Disconnect(UInt128 peer) => Disconnects.Add(peer);
    }

    private static UInt128 Id(int i) => (UInt128)i << 120;

    private static (SymphonyTopology Topology, Recorder Links, PeerRing Ring, VirtualClock Clock) Make(int self, int members, TopologyOptions? options = null)
    {
        var ring = new PeerRing();
        for (var i = 0; i < members; i++) ring.Add(Id(i));
        var links = new Recorder();
        var clock = new VirtualClock();
        return (new SymphonyTopology(Id(self), ring, options ?? new TopologyOptions { MaxLongDistEdges = 0 }, links, clock, new Random(7)), links, ring, clock);
    }

    [Test]
    public void The_member_ring_gives_the_nearest_member_on_either_side_wrapping_around_zero()
    {
        var ring = new PeerRing();
        Assert.That((ring.Before(Id(1)), ring.After(Id(1), 0)), Is.EqualTo(((UInt128?)null, (UInt128?)null)));
        ring.Add(Id(1));
        Assert.That(ring.Before(Id(1)), Is.Null, "a member alone has no neighbour");
        ring.Add(Id(5));
        ring.Add(Id(9));
        Assert.That(new[] { ring.Before(Id(1)), ring.Before(Id(5)), ring.Before(Id(9)) }, Is.EqualTo(new UInt128?[] { Id(9), Id(1), Id(5) }));
        Assert.That(new[] { ring.After(Id(1), 0), ring.After(Id(5), 0), ring.After(Id(9), 0) }, Is.EqualTo(new UInt128?[] { Id(5), Id(9), Id(1) }));
        Assert.That(ring.Before(Id(7)), Is.EqualTo(Id(5)), "a point that is no member: the nearest member before it");
    }

    [Test]
    public void Ring_arcs_wrap_around_zero()
    {
        Assert.That(Overlay.Topology.Ring.StrictlyBetween(UInt128.MaxValue - 5, 3, 10), Is.True);
        Assert.That(Overlay.Topology.Ring.StrictlyBetween(10, 3, UInt128.MaxValue - 5), Is.False);
        Assert.That(Overlay.Topology.Ring.StrictlyBetween(10, 10, 20), Is.False);
        Assert.That(Overlay.Topology.Ring.StrictlyBetween(10, 11, 10), Is.True, "(a, a) is the whole ring but a");
        Assert.That(Overlay.Topology.Ring.Advance(UInt128.MaxValue, 0.5), Is.EqualTo((UInt128.One << 127) - 1));
    }

    [Test]
    public void Links_to_the_successors_clockwise_wrapping_past_zero()
    {
        var (topology, links, _, _) = Make(self: 6, members: 8);
        topology.Rebalance();
        Assert.That(links.Connects, Is.EquivalentTo(new[] { (Id(7), LinkRoles.Successor), (Id(0), LinkRoles.Successor) }));
    }

    [Test]
    public void A_closer_newcomer_replaces_the_farthest_successor()
    {
        var (topology, links, ring, _) = Make(self: 2, members: 0);
        foreach (var i in new[] { 2, 8, 12, 20, 30 }) ring.Add(Id(i));
        topology.Rebalance();
        ring.Add(Id(5));
        topology.OnPeerJoined(Id(5));
        Assert.That(links.Connects.Select(c => c.Peer), Does.Contain(Id(5)));
        Assert.That(links.Disconnects, Is.EqualTo(new[] { Id(12) }));
    }

    [Test]
    public void A_link_that_is_up_stays_until_the_link_that_replaces_it_is_up()
    {
        var (topology, links, ring, clock) = Make(self: 2, members: 0);
        foreach (var i in new[] { 2, 8, 12, 20, 30 }) ring.Add(Id(i));
        topology.Rebalance();
        topology.OnLinkUp(Id(8));
        topology.OnLinkUp(Id(12));
        // A closer member joins that cannot be reached: the link to 12 carries on while the new one is tried and fails,
        // and while it is tried again after its backoff.
        ring.Add(Id(5));
        topology.OnPeerJoined(Id(5));
        Assert.That(links.Connects.Select(c => c.Peer), Does.Contain(Id(5)));
        Assert.That(links.Disconnects, Is.Empty, "the link to 12 stays while the one to 5 is set up");
        topology.OnLinkDown(Id(5), failed: true);
        Assert.That(links.Disconnects, Is.Empty);
        Assert.That(topology.Links.Single(l => l.Peer == Id(12)).Roles, Is.EqualTo(LinkRoles.Successor), "12 stands in for 5");
        clock.AdvanceTo(clock.GetUtcNow() + TimeSpan.FromSeconds(2));
        topology.Tick();
        Assert.That(links.Connects.Count(c => c.Peer == Id(5)), Is.EqualTo(2), "5 is tried again after its backoff");
        Assert.That(links.Disconnects, Is.Empty);
        topology.OnLinkUp(Id(5));
        Assert.That(links.Disconnects, Is.EqualTo(new[] { Id(12) }), "once 5 is up, 12 goes");
    }

    [Test]
    public void A_link_the_peer_counts_on_as_its_successor_is_kept_by_the_node_that_no_longer_wants_it()
    {
        var (topology, links, ring, _) = Make(self: 0, members: 0);
        foreach (var i in new[] { 0, 20, 30, 40 }) ring.Add(Id(i));
        topology.Rebalance();
        foreach (var l in links.Connects) topology.OnLinkUp(l.Peer);
        // 10 and 15 join: 0 now wants 10 and 15, not 20 or 30. 30 has 40 and 0 as its successors, so it wants the link
        // that 0 once set up; 20 does not (its successors are 30 and 40).
        foreach (var i in new[] { 10, 15 })
        {
            ring.Add(Id(i));
            topology.OnPeerJoined(Id(i));
        }
        topology.OnLinkUp(Id(10));
        topology.OnLinkUp(Id(15));
        Assert.That(links.Disconnects, Is.EqualTo(new[] { Id(20) }));
        Assert.That(topology.Links.Single(l => l.Peer == Id(30)).Roles, Is.EqualTo(LinkRoles.None));
    }

    [Test]
    public void Long_distance_targets_follow_the_harmonic_distribution_with_natural_log()
    {
        // 4096 members spread evenly: the ring fraction to a target is ~x, and ln(x)/ln(n) + 1 is uniform on [0, 1).
        var ring = new PeerRing();
        const int n = 4096;
        var step = UInt128.MaxValue / n;
        for (var i = 0; i < n; i++) ring.Add(step * (UInt128)i);
        var topology = new SymphonyTopology(0, ring, new TopologyOptions(), new Recorder(), new VirtualClock(), new Random(42));
        var fractions = Enumerable.Range(0, 20_000).Select(_ => (double)topology.DrawLongDistance()!.Value / (double)UInt128.MaxValue).Order().ToArray();
        var median = fractions[fractions.Length / 2];
        // ln: median n^-0.5 = 1/64. EdgeVPN's log10 would give e^{-0.5·log10 n} ≈ 0.16.
        Assert.That(median, Is.InRange(1.0 / 64 * 0.8, 1.0 / 64 * 1.25), $"median ring fraction {median}");
        var quartile = fractions[fractions.Length / 4];
        Assert.That(quartile, Is.InRange(Math.Pow(n, -0.75) * 0.7, Math.Pow(n, -0.75) * 1.4), $"first quartile {quartile}");
    }

    [Test]
    public void When_both_ask_at_once_the_higher_id_wins_and_one_link_results()
    {
        var (low, _, _, _) = Make(self: 1, members: 4);
        var (high, _, _, _) = Make(self: 3, members: 4);
        low.Rebalance(); // low asks high? (only if high is a successor of low: 2 and 3 are)
        high.Rebalance();
        var lowAcceptsHigh = low.OnLinkRequested(Id(3), LinkRoles.Successor);
        var highAcceptsLow = high.OnLinkRequested(Id(1), LinkRoles.Successor);
        Assert.That(highAcceptsLow.Accepted, Is.False, "the higher ID rejects the lower's colliding request");
        Assert.That(highAcceptsLow.Reason, Does.Contain("collision"));
        Assert.That(lowAcceptsHigh.Accepted, Is.True, "the lower ID accepts the higher's request");
    }

    [Test]
    public void Incoming_degree_is_bounded_except_for_successor_requests()
    {
        var (topology, _, _, _) = Make(self: 0, members: 40, new TopologyOptions { MaxLongDistEdges = 0, MaxIncomingEdges = 2 });
        topology.Rebalance();
        Assert.That(topology.OnLinkRequested(Id(5), LinkRoles.LongDistance).Accepted, Is.True);
        Assert.That(topology.OnLinkRequested(Id(6), LinkRoles.LongDistance).Accepted, Is.True);
        var third = topology.OnLinkRequested(Id(7), LinkRoles.LongDistance);
        Assert.That((third.Accepted, third.Reason), Is.EqualTo((false, "incoming degree bound 2 reached")));
        Assert.That(topology.OnLinkRequested(Id(39), LinkRoles.Successor).Accepted, Is.True, "a predecessor's successor link keeps the ring whole");
        // A member 12 places back whose nearer successors it cannot reach (NATs no link crosses) asks as a successor too.
        Assert.That(topology.OnLinkRequested(Id(28), LinkRoles.Successor).Accepted, Is.True, "within 8 successor counts");
        // A member further back cannot claim the successor role to get past the bound.
        var claimed = topology.OnLinkRequested(Id(3), LinkRoles.Successor);
        Assert.That((claimed.Accepted, claimed.Reason), Is.EqualTo((false, "incoming degree bound 2 reached")));
        Assert.That(topology.OnLinkRequested(Id(200 % 256), LinkRoles.LongDistance).Accepted, Is.False, "strangers are refused");
    }

    [Test]
    public void By_default_the_incoming_bound_is_twice_the_long_distance_links_and_at_least_16()
    {
        var (small, _, _, _) = Make(self: 0, members: 10, new TopologyOptions());
        Assert.That(small.IncomingBound, Is.EqualTo(16), "3 long-distance links at 10 members: the floor");
        var ring = new PeerRing();
        for (var i = 0; i < 4096; i++) ring.Add((UInt128)i << 100);
        var large = new SymphonyTopology(0, ring, new TopologyOptions(), new Recorder(), new VirtualClock(), new Random(7));
        Assert.That(large.WantedLongDistance, Is.EqualTo(12));
        Assert.That(large.IncomingBound, Is.EqualTo(24), "Symphony's 2k");
        for (var i = 1; i <= 24; i++) Assert.That(large.OnLinkRequested((UInt128)(2000 + i) << 100, LinkRoles.LongDistance).Accepted, Is.True, $"request {i}");
        Assert.That(large.OnLinkRequested((UInt128)3000 << 100, LinkRoles.LongDistance).Reason, Is.EqualTo("incoming degree bound 24 reached"));
        var (bounded, _, _, _) = Make(self: 0, members: 10, new TopologyOptions { MaxIncomingEdges = 40 });
        Assert.That(bounded.IncomingBound, Is.EqualTo(40), "a configured bound is kept");
    }

    [Test]
    public void A_failed_peer_is_retried_only_after_its_backoff()
    {
        var (topology, links, _, clock) = Make(self: 0, members: 8);
        topology.Rebalance();
        links.Connects.Clear();
        topology.OnLinkDown(Id(1), failed: true);
        Assert.That(links.Connects.Select(c => c.Peer), Is.EqualTo(new[] { Id(3) }), "the next member stands in for the failed successor");
        topology.Tick();
        Assert.That(links.Connects.Select(c => c.Peer), Does.Not.Contain(Id(1)));
        clock.AdvanceTo(clock.GetUtcNow() + TimeSpan.FromSeconds(2)); // initial delay 1 s, jitter at most +25%
        topology.Tick();
        Assert.That(links.Connects.Select(c => c.Peer), Does.Contain(Id(1)));
        Assert.That(links.Disconnects, Does.Contain(Id(3)), "the stand-in is dropped once the true successor is back");
    }

    [Test]
    public void Static_edges_are_always_linked()
    {
        var (topology, links, _, _) = Make(self: 0, members: 20, new TopologyOptions { MaxLongDistEdges = 0, StaticEdges = [Id(10)] });
        topology.Rebalance();
        Assert.That(links.Connects, Does.Contain((Id(10), LinkRoles.Static)));
    }

    [Test]
    public void Busy_peers_get_an_on_demand_link_that_goes_when_idle()
    {
        var options = new TopologyOptions { MaxLongDistEdges = 0, OnDemandThresholdBytesPerSecond = 1000, OnDemandIdleTimeout = TimeSpan.FromSeconds(10) };
        var (topology, links, _, clock) = Make(self: 0, members: 20, options);
        topology.Rebalance();
        foreach (var l in links.Connects) topology.OnLinkUp(l.Peer);
        clock.AdvanceTo(clock.GetUtcNow() + TimeSpan.FromSeconds(1));
        topology.OnTraffic(Id(10), 5000);
        topology.OnTraffic(Id(11), 10);
        topology.Tick();
        Assert.That(links.Connects, Does.Contain((Id(10), LinkRoles.OnDemand)));
        Assert.That(links.Connects.Select(c => c.Peer), Does.Not.Contain(Id(11)));
        topology.OnLinkUp(Id(10));
        for (var s = 0; s < 12; s++)
        {
            clock.AdvanceTo(clock.GetUtcNow() + TimeSpan.FromSeconds(1));
            topology.Tick();
        }
        Assert.That(links.Disconnects, Does.Contain(Id(10)));
    }
}
