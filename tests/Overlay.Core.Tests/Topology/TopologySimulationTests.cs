using NUnit.Framework;
using Overlay.Topology.Simulation;

namespace Overlay.Core.Tests.Topology;

/// <summary>The real topology code for a thousand nodes, on a virtual clock.</summary>
public class TopologySimulationTests
{
    [TestCase(1000, 1)]
    [TestCase(300, 2)]
    public void A_ring_forms_stays_small_world_and_heals_after_ten_percent_crash(int nodes, int seed)
    {
        var sim = new TopologySimulation(seed);
        sim.Join(nodes);
        var formedIn = sim.RunUntilRingFormed(TimeSpan.FromMinutes(2));
        var before = TopologyMetrics.Measure(sim, pairs: 200_000, seed: seed);
        TestContext.Out.WriteLine($"seed {seed}: formed in {formedIn?.TotalSeconds:0.0} s virtual; {before}");
        Assert.That(formedIn, Is.Not.Null, $"ring not formed: {before}");
        Assert.That(before.Connected, Is.True);
        var log2 = Math.Log2(nodes);
        Assert.That(before.MeanHops, Is.LessThanOrEqualTo(log2), "Symphony with log2 N shortcuts keeps paths O(log N)");
        Assert.That(before.MeanDegree, Is.LessThanOrEqualTo(2 * (2 + Math.Floor(log2)) + 1), "links per node stay O(log N)");

        // Most requests find room: a bound tighter than the spread of incoming draws turned most of them away.
        Assert.That(sim.RefusedRequests, Is.LessThan(sim.LinkChanges / 4), $"{sim.RefusedRequests} of {sim.LinkChanges} requests refused while forming");
        var changes = sim.LinkChanges;
        var refused = sim.RefusedRequests;
        sim.Crash(0.10);
        var healedIn = sim.RunUntilRingFormed(TimeSpan.FromMinutes(5));
        var after = TopologyMetrics.Measure(sim, pairs: 200_000, seed: seed);
        TestContext.Out.WriteLine($"after 10% crash: healed in {healedIn?.TotalSeconds:0.0} s virtual, {sim.LinkChanges - changes} link changes ({sim.RefusedRequests - refused} refused requests); {after}");
        Assert.That(healedIn, Is.Not.Null, $"not healed: {after}");
        Assert.That(after.Connected, Is.True);
        Assert.That(after.Nodes, Is.EqualTo(nodes - nodes / 10));
        Assert.That(after.MeanHops, Is.LessThanOrEqualTo(log2));
    }
}

/// <summary>The real topology and the real switches of a thousand nodes: broadcasts, learned unicast, before and after a crash.</summary>
public class OverlaySimulationTests
{
    [Test]
    public void A_thousand_switches_deliver_every_broadcast_once_and_unicast_on_short_paths_before_and_after_a_crash()
    {
        const int nodes = 1000;
        var sim = new TopologySimulation(seed: 3) { WithSwitches = true };
        sim.Join(nodes);
        Assert.That(sim.RunUntilRingFormed(TimeSpan.FromMinutes(2)), Is.Not.Null, "ring formed");
        var bound = 2 * Math.Log2(nodes); // Symphony: O(log N) depth; allow twice log2 N

        var before = SwitchMetrics.Measure(sim, broadcasts: 40, unicasts: 400, seed: 1);
        TestContext.Out.WriteLine($"before: {before}");
        Assert.Multiple(() =>
        {
            Assert.That(before.DeliveredExactlyOnce, Is.EqualTo(before.Broadcasts), $"missed {before.Missed}, duplicates {before.Duplicates}");
            Assert.That(before.MaxFloodDepth, Is.LessThanOrEqualTo(bound), "flood depth O(log N)");
            Assert.That(before.UnicastDelivered, Is.EqualTo(before.UnicastPairs), "every unicast reached its destination and no one else");
            Assert.That(before.MaxUnicastHops, Is.LessThanOrEqualTo(bound), "learned unicast paths follow the flood tree: O(log N)");
        });

        sim.Crash(0.10);
        Assert.That(sim.RunUntilRingFormed(TimeSpan.FromMinutes(5)), Is.Not.Null, "ring healed");
        var after = SwitchMetrics.Measure(sim, broadcasts: 40, unicasts: 400, seed: 2);
        TestContext.Out.WriteLine($"after 10% crash and healing: {after}");
        Assert.Multiple(() =>
        {
            Assert.That(after.DeliveredExactlyOnce, Is.EqualTo(after.Broadcasts), $"missed {after.Missed}, duplicates {after.Duplicates}");
            Assert.That(after.MaxFloodDepth, Is.LessThanOrEqualTo(bound));
            Assert.That(after.UnicastDelivered, Is.EqualTo(after.UnicastPairs));
        });
    }

    /// <summary>
    /// Hosts that were talking keep talking after a crash, with no broadcast to teach the switches again: their hosts still
    /// know each other's addresses (ARP caches, as the scale run's pings did), so the switches alone must find the new way
    /// when the old one went through a crashed member. Each pair gets a few exchanges (a frame each way, as a ping and its
    /// reply), a second of virtual time apart.
    /// </summary>
    [TestCase(200, 7)]
    [TestCase(400, 8)]
    [TestCase(400, 12)]
    [TestCase(300, 17)]
    [TestCase(600, 19)]
    public void Conversations_find_a_new_way_after_a_crash_without_a_broadcast(int nodes, int seed)
    {
        var sim = new TopologySimulation(seed) { WithSwitches = true };
        sim.Join(nodes);
        Assert.That(sim.RunUntilRingFormed(TimeSpan.FromMinutes(2)), Is.Not.Null, "ring formed");
        var talks = new Conversations(sim, pairs: 600, seed);
        Assert.That(talks.StartedTalking, Is.EqualTo(600), "before the crash, every pair talks");

        sim.Crash(0.25);
        Assert.That(sim.RunUntilRingFormed(TimeSpan.FromMinutes(5)), Is.Not.Null, "ring healed");
        var (pairs, needed, looped) = talks.Resume(attempts: 10);
        TestContext.Out.WriteLine($"{nodes}/{seed}: {looped} frames caught in a loop; {pairs} live pairs; exchanges needed: " +
            string.Join(", ", needed.GroupBy(t => t).OrderBy(g => g.Key).Select(g => $"{(g.Key == 0 ? "never" : g.Key)}: {g.Count()}")));
        Assert.That(pairs, Is.GreaterThan(200));
        Assert.That(looped, Is.Zero, "frames that went round a loop of paths");
        Assert.That(needed.Count(t => t != 1), Is.Zero, "pairs whose first exchange after healing did not get through (0: none of 10 did)");
    }

    /// <summary>
    /// A third of the members behind NATs no link between two of them crosses (symmetric NATs, no TURN server): the
    /// topology links each member's nearest reachable successors, and the switches bring every broadcast to every member
    /// once, those that can link neither ring neighbour among them, before and after a crash.
    /// </summary>
    [Test]
    public void Members_behind_nats_no_link_crosses_get_every_broadcast_once()
    {
        const int nodes = 1500;
        var sim = new TopologySimulation(seed: 5) { WithSwitches = true, Unlinkable = 1.0 / 3 };
        sim.Join(nodes);
        var (_, cutOff) = sim.RingGaps();
        TestContext.Out.WriteLine($"{cutOff} members can link neither ring neighbour");
        Assert.That(cutOff, Is.GreaterThan(10), "the case this is about");
        Assert.That(sim.RunUntilRingFormed(TimeSpan.FromMinutes(2)), Is.Not.Null, "every member linked to its two nearest reachable successors");
        Assert.That(sim.FailedSetups, Is.GreaterThan(0));

        var before = SwitchMetrics.Measure(sim, broadcasts: 40, unicasts: 400, seed: 1);
        TestContext.Out.WriteLine($"before: {before}");
        Assert.That((before.DeliveredExactlyOnce, before.Missed, before.Duplicates), Is.EqualTo((before.Broadcasts, 0L, 0L)));
        Assert.That(before.UnicastDelivered, Is.EqualTo(before.UnicastPairs));

        sim.Crash(0.10);
        Assert.That(sim.RunUntilRingFormed(TimeSpan.FromMinutes(5)), Is.Not.Null, "ring healed");
        var after = SwitchMetrics.Measure(sim, broadcasts: 40, unicasts: 400, seed: 2);
        TestContext.Out.WriteLine($"after 10% crash and healing: {after}");
        Assert.That((after.DeliveredExactlyOnce, after.Missed, after.Duplicates), Is.EqualTo((after.Broadcasts, 0L, 0L)));
        Assert.That(after.UnicastDelivered, Is.EqualTo(after.UnicastPairs));
    }
}
