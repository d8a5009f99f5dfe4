using System.Buffers.Binary;

namespace Overlay.Topology.Simulation;

/// <summary>What the real switches of a simulated overlay do with frames (needs <see cref="TopologySimulation.WithSwitches"/>).</summary>
/// <param name="Broadcasts">Broadcasts sent, each from a random node.</param>
/// <param name="DeliveredExactlyOnce">Broadcasts that reached every other live node exactly once (and not their source).</param>
/// <param name="Missed">Deliveries missing over all broadcasts.</param>
/// <param name="Duplicates">Extra deliveries over all broadcasts.</param>
/// <param name="MeanFloodDepth">Mean over broadcasts of the deepest delivery, in links crossed.</param>
/// <param name="MaxFloodDepth">Deepest delivery of any broadcast.</param>
/// <param name="UnicastPairs">Unicast frames sent between random pairs, after the destination's broadcast taught the switches its MAC.</param>
/// <param name="UnicastDelivered">Unicast frames that reached their destination exactly once and no other host.</param>
/// <param name="MeanUnicastHops">Mean links crossed by a unicast frame.</param>
/// <param name="MaxUnicastHops">Most links crossed by a unicast frame.</param>
internal sealed record SwitchMetrics(int Broadcasts, int DeliveredExactlyOnce, long Missed, long Duplicates, double MeanFloodDepth, int MaxFloodDepth,
    int UnicastPairs, int UnicastDelivered, double MeanUnicastHops, int MaxUnicastHops)
{
    /// <summary>
    /// Sends <paramref name="broadcasts"/> broadcasts from random nodes, then <paramref name="unicasts"/> unicast frames
    /// from random nodes to the broadcasters, through the real switches.
    /// </summary>
    public static SwitchMetrics Measure(TopologySimulation sim, int broadcasts, int unicasts, int seed)
    {
        ArgumentNullException.ThrowIfNull(sim);
        if (!sim.WithSwitches) throw new InvalidOperationException("the simulation runs without switches (WithSwitches = false)");
        var switches = sim.Switches.Values.ToArray();
        var random = new Random(seed);
        var frame = new byte[64];
        var sources = new List<SimulatedSwitch>();
        int exactlyOnce = 0, maxDepth = 0;
        long missed = 0, duplicates = 0, depthSum = 0;
        foreach (var sw in switches) sw.TakeDeliveries();
        for (var b = 0; b < broadcasts && switches.Length > 1; b++)
        {
            var source = switches[random.Next(switches.Length)];
            sources.Add(source);
            Write(frame, 0xFFFF_FFFF_FFFFUL, source.Mac, b);
            source.Switch.OnLocalFrame(frame);
            var depth = 0;
            var ok = true;
            foreach (var sw in switches)
            {
                var (count, d) = sw.TakeDeliveries();
                var expected = sw == source ? 0 : 1;
                if (count < expected) missed += expected - count;
                if (count > expected) duplicates += count - expected;
                ok &= count == expected;
                depth = Math.Max(depth, d);
            }
            if (ok) exactlyOnce++;
            depthSum += depth;
            maxDepth = Math.Max(maxDepth, depth);
        }

        int delivered = 0, maxHops = 0, sent = 0;
        long hopSum = 0;
        for (var u = 0; u < unicasts && sources.Count > 0; u++)
        {
            var destination = sources[random.Next(sources.Count)];
            var source = switches[random.Next(switches.Length)];
            if (source == destination) continue;
            sent++;
            Write(frame, destination.Mac, source.Mac, u);
            source.Switch.OnLocalFrame(frame);
            var reached = destination.TakeDeliveries();
            var strays = 0;
            foreach (var sw in switches)
                if (sw != destination) strays += sw.TakeDeliveries().Count;
            if (reached.Count == 1 && strays == 0) delivered++;
            hopSum += reached.Depth;
            maxHops = Math.Max(maxHops, reached.Depth);
        }
        return new SwitchMetrics(broadcasts, exactlyOnce, missed, duplicates, broadcasts == 0 ? 0 : (double)depthSum / broadcasts, maxDepth,
            sent, delivered, sent == 0 ? 0 : (double)hopSum / sent, maxHops);
    }

    /// <summary>A test frame of the local experimental EtherType from <paramref name="source"/> to <paramref name="destination"/>, numbered.</summary>
    internal static void Write(byte[] frame, ulong destination, ulong source, int number)
    {
        Span<byte> mac = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(mac, destination);
        mac[2..].CopyTo(frame);
        BinaryPrimitives.WriteUInt64BigEndian(mac, source);
        mac[2..].CopyTo(frame.AsSpan(6));
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x88B5); // local experimental EtherType
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(14), number);
    }
}
