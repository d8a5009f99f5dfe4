using System.Buffers.Binary;
using Overlay.Switching;
using Overlay.Switching.Flood;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

/// <summary>
/// Many switches wired in memory. Link sends are queued and delivered by <see cref="Pump"/> in order,
/// so a run is deterministic and every copy of every frame can be counted.
/// </summary>
internal sealed class SwitchFabric
{
    private readonly Queue<Action> _pending = new();

    public Dictionary<NodeId, OverlaySwitch> Switches { get; } = [];
    public Dictionary<NodeId, LocalHost> Hosts { get; } = [];
    public HashSet<(NodeId, NodeId)> Links { get; } = [];
    public long LinkTransmissions { get; private set; }
    /// <summary>Of those, copies that only carried a flood to a gap (<see cref="FloodGap.GapBehindOnly"/>, <see cref="FloodGap.RelayIntoGap"/>): not tree edges.</summary>
    public long GapOnlyTransmissions { get; private set; }
    public int MaxFloodHop { get; private set; }
    public SwitchOptions? Options { get; init; }
    /// <summary>The switches' clock: <see cref="Tick"/> advances it.</summary>
    public ManualClock Clock { get; } = new();

    public static ulong MacOf(NodeId id) => 0x0200_0000_0000UL | ((ulong)(id.Value >> 96) & 0xFFFF_FFFF); // locally administered, unique for our IDs

    public OverlaySwitch Add(NodeId id)
    {
        var host = new LocalHost(id);
        var sw = new OverlaySwitch(id, host, Options, Clock, localMacs: [MacOf(id)]);
        Switches[id] = sw;
        Hosts[id] = host;
        return sw;
    }

    public void Connect(NodeId a, NodeId b)
    {
        if (a == b || !Links.Add(Key(a, b))) return;
        Switches[a].AddLink(b, new LinkPort(this, a, b));
        Switches[b].AddLink(a, new LinkPort(this, b, a));
    }

    public void Disconnect(NodeId a, NodeId b)
    {
        Links.Remove(Key(a, b));
        Switches[a].RemoveLink(b);
        Switches[b].RemoveLink(a);
    }

    /// <summary>Lets <paramref name="elapsed"/> pass on every switch's clock.</summary>
    public void Tick(TimeSpan elapsed)
    {
        Clock.Now += elapsed;
        foreach (var sw in Switches.Values) sw.Tick();
    }

    public void Pump()
    {
        while (_pending.TryDequeue(out var action)) action();
    }

    public void ResetCounts()
    {
        LinkTransmissions = 0;
        GapOnlyTransmissions = 0;
        MaxFloodHop = 0;
        foreach (var h in Hosts.Values) h.Received.Clear();
    }

    private static (NodeId, NodeId) Key(NodeId a, NodeId b) => a < b ? (a, b) : (b, a);

    private sealed class LinkPort(SwitchFabric fabric, NodeId from, NodeId to) : ISwitchPort
    {
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            if (!fabric.Links.Contains(Key(from, to))) return false;
            var copy = frame.ToArray();
            fabric.LinkTransmissions++;
            fabric._pending.Enqueue(() => fabric.Switches[to].OnLinkFrame(from, copy));
            return true;
        }

        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            if (!fabric.Links.Contains(Key(from, to))) return false;
            var copy = frame.ToArray();
            var h = header;
            fabric.LinkTransmissions++;
            if (h.Gap is FloodGap.GapBehindOnly or FloodGap.RelayIntoGap) fabric.GapOnlyTransmissions++;
            fabric.MaxFloodHop = Math.Max(fabric.MaxFloodHop, h.Hop);
            fabric._pending.Enqueue(() => fabric.Switches[to].OnLinkFlood(from, h, copy));
            return true;
        }
    }

    /// <summary>The host behind a switch's local port: records what it is given.</summary>
    internal sealed class LocalHost(NodeId id) : ISwitchPort
    {
        public NodeId Id { get; } = id;
        public List<byte[]> Received { get; } = [];
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            Received.Add(frame.ToArray());
            return true;
        }
        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) => throw new InvalidOperationException("the local port never gets flood headers");
        public int Count(int tag) => Received.Count(f => f.Length >= 18 && BinaryPrimitives.ReadInt32BigEndian(f.AsSpan(14)) == tag);
    }

    /// <summary>An Ethernet frame from <paramref name="source"/> to <paramref name="destination"/> carrying <paramref name="tag"/>.</summary>
    public static byte[] Frame(ulong destination, ulong source, int tag, ushort etherType = 0x88B5, int length = 64)
    {
        var f = new byte[length];
        EthernetFrame.WriteHeader(f, destination, source, etherType);
        BinaryPrimitives.WriteInt32BigEndian(f.AsSpan(14), tag);
        return f;
    }

    /// <summary>Builds a ring of <paramref name="n"/> switches with random IDs and <paramref name="successors"/> successor links, plus extra links.</summary>
    public static (SwitchFabric Fabric, NodeId[] Ids) Ring(int n, int successors, Random random, Func<NodeId[], int, Random, IEnumerable<int>>? extra = null,
        SwitchOptions? options = null)
    {
        var fabric = new SwitchFabric { Options = options };
        var ids = new HashSet<NodeId>();
        while (ids.Count < n) ids.Add(new NodeId(new UInt128(((ulong)random.NextInt64() << 1) | (uint)random.Next(2), (ulong)random.NextInt64())));
        var sorted = ids.Order().ToArray();
        foreach (var id in sorted) fabric.Add(id);
        for (var i = 0; i < n; i++)
        {
            for (var k = 1; k <= successors; k++) fabric.Connect(sorted[i], sorted[(i + k) % n]);
            if (extra is not null)
                foreach (var j in extra(sorted, i, random)) fabric.Connect(sorted[i], sorted[j]);
        }
        return (fabric, sorted);
    }

    /// <summary>Tells each switch its ring neighbours among <paramref name="sorted"/>, as a node's topology does.</summary>
    public void TellRing(NodeId[] sorted)
    {
        for (var i = 0; i < sorted.Length; i++)
            Switches[sorted[i]].SetRingNeighbours(sorted[(i + sorted.Length - 1) % sorted.Length], sorted[(i + 1) % sorted.Length]);
    }

    /// <summary>Symphony's long links: ⌊log2 n⌋ targets at ring fractions e^{ln(n)(r−1)}.</summary>
    public static IEnumerable<int> Harmonic(NodeId[] sorted, int i, Random random)
    {
        var n = sorted.Length;
        for (var k = 0; k < (int)Math.Log2(n); k++)
        {
            var x = Math.Exp(Math.Log(n) * (random.NextDouble() - 1));
            yield return (i + Math.Max(1, (int)(x * n))) % n;
        }
    }

    /// <summary>Random chords: each switch links to a few uniformly chosen others.</summary>
    public static IEnumerable<int> RandomChords(NodeId[] sorted, int i, Random random)
    {
        var count = random.Next(0, 4);
        for (var k = 0; k < count; k++) yield return random.Next(sorted.Length);
    }
}
