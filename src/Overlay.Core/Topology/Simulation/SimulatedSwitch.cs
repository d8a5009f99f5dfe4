using System.Buffers.Binary;
using Overlay.Switching;
using Overlay.Switching.Flood;

namespace Overlay.Topology.Simulation;

/// <summary>
/// A node's real <see cref="OverlaySwitch"/> in a simulation: its local port records what reaches the node and at
/// which depth, its link ports hand frames synchronously to the neighbour's switch (so the depth of the call chain
/// is the number of links a frame crossed).
/// </summary>
internal sealed class SimulatedSwitch
{
    [ThreadStatic] private static int t_depth;

    public SimulatedSwitch(UInt128 id, TimeProvider clock)
    {
        Id = id;
        Mac = MacOf(id);
        Switch = new OverlaySwitch(new NodeId(id), new LocalPort(this), new SwitchOptions(), clock, [Mac]);
    }

    public UInt128 Id { get; }

    /// <summary>The MAC of the node's host (derived from the node ID, unicast, locally administered).</summary>
    public ulong Mac { get; }

    public OverlaySwitch Switch { get; }

    /// <summary>False once the node crashed: frames sent to it vanish.</summary>
    public bool Alive { get; set; } = true;

    /// <summary>Frames delivered to the host since the last <see cref="TakeDeliveries"/>, and the link hops of the deepest one.</summary>
    public int Deliveries { get; private set; }

    public int LastDepth { get; private set; }

    /// <summary>Links a plain (unicast) frame may cross in a simulation before it is taken for one going round a loop.</summary>
    public const int MaxUnicastHops = 64;

    /// <summary>Plain frames stopped on their way here after <see cref="MaxUnicastHops"/> links: frames caught in a loop of paths.</summary>
    public int LoopedFrames { get; set; }

    /// <summary>Of the frames delivered to the host, the unicast ones addressed to it.</summary>
    public int UnicastsForHost { get; set; }

    /// <summary>Of the frames delivered to the host, the unicast ones addressed to another host (a switch's mistake).</summary>
    public int UnicastsForOthers { get; set; }

    public (int Count, int Depth) TakeDeliveries()
    {
        var result = (Deliveries, LastDepth);
        Deliveries = 0;
        LastDepth = 0;
        return result;
    }

    public static ulong MacOf(UInt128 id) => 0x0200_0000_0000UL | ((ulong)id & 0x00FF_FFFF_FFFFUL);

    public static void Connect(SimulatedSwitch a, SimulatedSwitch b)
    {
        a.Switch.AddLink(new NodeId(b.Id), new LinkPort(a.Id, b));
        b.Switch.AddLink(new NodeId(a.Id), new LinkPort(b.Id, a));
    }

    private sealed class LocalPort(SimulatedSwitch owner) : ISwitchPort
    {
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            owner.Deliveries++;
            owner.LastDepth = Math.Max(owner.LastDepth, t_depth);
            if (frame.Length >= 8 && (frame[0] & 1) == 0)
            {
                if (BinaryPrimitives.ReadUInt64BigEndian(frame) >> 16 == owner.Mac) owner.UnicastsForHost++;
                else owner.UnicastsForOthers++;
            }
            return true;
        }

        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) => false;
    }

    private sealed class LinkPort(UInt128 self, SimulatedSwitch peer) : ISwitchPort
    {
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            if (!peer.Alive) return false;
            if (t_depth >= MaxUnicastHops)
            {
                // A plain frame carries no hop count: on a real overlay it would go round a loop of paths until a table
                // changed. Here it is stopped and counted.
                peer.LoopedFrames++;
                return false;
            }
            t_depth++;
            try { peer.Switch.OnLinkFrame(new NodeId(self), frame); }
            finally { t_depth--; }
            return true;
        }

        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            if (!peer.Alive) return false;
            t_depth++;
            try { peer.Switch.OnLinkFlood(new NodeId(self), header, frame); }
            finally { t_depth--; }
            return true;
        }
    }
}
