// Runs the real Symphony topology and the real switch code for many nodes on a virtual clock and prints what they build:
// ring formation, links per node, shortest-path hops, broadcasts (exactly once? how deep?) and learned unicast paths,
// before and after a fraction of the nodes crash at once; and whether hosts that were talking (100 pairs, ARP caches
// kept, so no broadcast after the crash) get through at once on the ways the switches find.
// With --unlinkable F, a share F of the nodes sit behind NATs no link between two of them can cross (symmetric NATs and
// no TURN server): some members then have no link to a ring neighbour, and the floods must still reach them.
// usage: dotnet run -c Release --project samples/Overlay.Simulator -- [--nodes N] [--seed S] [--crash 0.1] [--unlinkable 0.2]
using System.Diagnostics;
using System.Globalization;
using Overlay.Topology.Simulation;

var nodes = 10_000;
var seed = 1;
var crash = 0.10;
var unlinkable = 0.0;
for (var i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--nodes": nodes = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--seed": seed = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--crash": crash = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--unlinkable": unlinkable = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}

var wall = Stopwatch.StartNew();
var sim = new TopologySimulation(seed) { WithSwitches = true, Unlinkable = unlinkable };
sim.Join(nodes);
Console.WriteLine($"{nodes} nodes joined (seed {seed}); forming the ring...");
if (unlinkable > 0) PrintGaps();
var formed = sim.RunUntilRingFormed(TimeSpan.FromMinutes(10));
var before = TopologyMetrics.Measure(sim, pairs: 500_000, seed: seed);
Print("formed", formed, before);
var switchesBefore = SwitchMetrics.Measure(sim, broadcasts: 20, unicasts: 2000, seed: seed);
PrintSwitches(switchesBefore);
var talks = new Conversations(sim, pairs: 100, seed: seed);
Console.WriteLine($"  conversations: {talks.StartedTalking} of 100 pairs talking (an exchange each way)");
Console.WriteLine($"  link changes while forming: {sim.LinkChanges} ({sim.RefusedRequests} requests refused, {sim.FailedSetups} setups failed)");

var changes = sim.LinkChanges;
var refused = sim.RefusedRequests;
sim.Crash(crash);
Console.WriteLine($"{crash:P0} of the nodes crashed at once; healing...");
var healed = sim.RunUntilRingFormed(TimeSpan.FromMinutes(10));
var after = TopologyMetrics.Measure(sim, pairs: 500_000, seed: seed);
Print("healed", healed, after);
var (pairs, needed, looped) = talks.Resume(attempts: 10);
var first = needed.Count(n => n == 1);
Console.WriteLine($"  conversations, no broadcast since the crash: {first} of {pairs} live pairs through at the first exchange, " +
    $"{needed.Count(n => n > 1)} later, {needed.Count(n => n == 0)} not in 10 (a second apart); frames caught in a loop: {looped}");
var switchesAfter = SwitchMetrics.Measure(sim, broadcasts: 20, unicasts: 2000, seed: seed + 1);
PrintSwitches(switchesAfter);
if (unlinkable > 0) PrintGaps();
Console.WriteLine($"  link changes while healing: {sim.LinkChanges - changes} ({sim.RefusedRequests - refused} requests refused)");
Console.WriteLine($"wall time {wall.Elapsed.TotalSeconds:0.0} s");
return formed is not null && healed is not null && before.Connected && after.Connected && Good(switchesBefore) && Good(switchesAfter)
    && talks.StartedTalking == 100 && first == pairs && looped == 0 ? 0 : 1;

void PrintGaps()
{
    var (gaps, cutOff) = sim.RingGaps();
    Console.WriteLine($"  ring successors that cannot be linked: {gaps}; members that can link neither ring neighbour: {cutOff}");
}

static bool Good(SwitchMetrics m) => m.DeliveredExactlyOnce == m.Broadcasts && m.UnicastDelivered == m.UnicastPairs;

static void PrintSwitches(SwitchMetrics m)
{
    Console.WriteLine($"  broadcasts through the real switches: {m.DeliveredExactlyOnce} of {m.Broadcasts} reached every other node exactly once " +
        $"(missed {m.Missed}, duplicates {m.Duplicates}); flood depth mean {m.MeanFloodDepth:0.0}, max {m.MaxFloodDepth} links");
    Console.WriteLine($"  unicast on learned paths: {m.UnicastDelivered} of {m.UnicastPairs} delivered to exactly their destination; hops mean {m.MeanUnicastHops:0.00}, max {m.MaxUnicastHops}");
}

static void Print(string what, TimeSpan? took, TopologyMetrics m)
{
    Console.WriteLine($"{what}: {(took is { } t ? $"in {t.TotalSeconds:0.0} s of virtual time" : "NOT within the limit")}");
    Console.WriteLine($"  nodes {m.Nodes}, ring formed {m.RingFormed} (missing successor links {m.MissingSuccessorLinks}), connected {m.Connected}");
    Console.WriteLine($"  links per node: mean {m.MeanDegree:0.0}, max {m.MaxDegree}");
    Console.WriteLine($"  shortest-path hops over {m.SampledPairs} pairs: mean {m.MeanHops:0.00}, max {m.MaxHops} (log2 N = {Math.Log2(m.Nodes):0.0})");
}
