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

        var changes = sim.LinkChanges;
        sim.Crash(0.10);
        var healedIn = sim.RunUntilRingFormed(TimeSpan.FromMinutes(5));
        var after = TopologyMetrics.Measure(sim, pairs: 200_000, seed: seed);
        TestContext.Out.WriteLine($"after 10% crash: healed in {healedIn?.TotalSeconds:0.0} s virtual, {sim.LinkChanges - changes} link changes; {after}");
        Assert.That(healedIn, Is.Not.Null, $"not healed: {after}");
        Assert.That(after.Connected, Is.True);
        Assert.That(after.Nodes, Is.EqualTo(nodes - nodes / 10));
        Assert.That(after.MeanHops, Is.LessThanOrEqualTo(log2));
    }
}
