using System.Collections.Concurrent;

namespace Overlay.Switching.Learning;

/// <summary>A switch port as the tables see it; <see cref="Alive"/> goes false the moment the port is removed.</summary>
internal sealed class PortEntry(NodeId id, ISwitchPort port, bool isLocal)
{
    public NodeId Id { get; } = id;
    public ISwitchPort Port { get; } = port;
    public bool IsLocal { get; } = isLocal;
    public volatile bool Alive = true;
}

/// <summary>Where a MAC address lives: the port towards it and the switch that owns it. Immutable but for its timestamp.</summary>
internal sealed class MacEntry(PortEntry port, NodeId owner, long now)
{
    public PortEntry Port { get; } = port;
    public NodeId Owner { get; } = owner;
    public long LastSeen = now;
    public volatile bool Stale;
}

/// <summary>A learned path for one (source MAC, destination MAC) conversation.</summary>
internal sealed class FlowEntry(PortEntry port, MacEntry? target, NodeId owner, long now)
{
    public PortEntry Port { get; } = port;
    public MacEntry? Target { get; } = target;
    public NodeId Owner { get; } = owner;
    public long LastSeen = now;
    public long Bytes;

    public bool Valid => Port.Alive && (Target is null || !Target.Stale);
}

/// <summary>
/// The switch's learned state: MAC → (port, owner switch) from flood frames and local frames, and
/// (source, destination) → port paths so both directions of a conversation share one loop-free path.
/// Lookups are lock-free and allocation-free; an entry is allocated only when something is learned anew.
/// </summary>
internal sealed class ForwardingTables
{
    private readonly ConcurrentDictionary<ulong, MacEntry> _macs = new();
    private readonly ConcurrentDictionary<(ulong Source, ulong Destination), FlowEntry> _flows = new();

    public int MacCount => _macs.Count;

    public int FlowCount => _flows.Count;

    public bool TryGetMac(ulong mac, out MacEntry entry) => _macs.TryGetValue(mac, out entry!);

    public bool TryGetFlow(ulong source, ulong destination, out FlowEntry flow) => _flows.TryGetValue((source, destination), out flow!);

    public void SetFlow(ulong source, ulong destination, FlowEntry flow) => _flows[(source, destination)] = flow;

    /// <summary>Learns that <paramref name="mac"/> is reached through <paramref name="port"/> and owned by <paramref name="owner"/>.</summary>
    public void Learn(ulong mac, PortEntry port, NodeId owner, long now)
    {
        if (_macs.TryGetValue(mac, out var known) && ReferenceEquals(known.Port, port) && known.Owner == owner && !known.Stale)
        {
            known.LastSeen = now;
            return;
        }
        var entry = new MacEntry(port, owner, now);
        _macs[mac] = entry;
        if (known is not null) known.Stale = true; // paths built on the old location are recomputed
    }

    /// <summary>Forgets everything that goes through <paramref name="port"/>.</summary>
    public void Purge(PortEntry port)
    {
        foreach (var (mac, entry) in _macs)
            if (ReferenceEquals(entry.Port, port) && _macs.TryRemove(new KeyValuePair<ulong, MacEntry>(mac, entry))) entry.Stale = true;
        foreach (var (key, flow) in _flows)
            if (ReferenceEquals(flow.Port, port)) _flows.TryRemove(new KeyValuePair<(ulong, ulong), FlowEntry>(key, flow));
    }

    /// <summary>Removes entries not seen since <paramref name="oldest"/>, and flows that became invalid.</summary>
    public void Expire(long oldest)
    {
        foreach (var (mac, entry) in _macs)
            if (entry.LastSeen < oldest && _macs.TryRemove(new KeyValuePair<ulong, MacEntry>(mac, entry))) entry.Stale = true;
        foreach (var (key, flow) in _flows)
            if ((flow.LastSeen < oldest || !flow.Valid)) _flows.TryRemove(new KeyValuePair<(ulong, ulong), FlowEntry>(key, flow));
    }

    /// <summary>Bytes sent per destination switch since the last call.</summary>
    public Dictionary<NodeId, long> TakeTraffic()
    {
        var result = new Dictionary<NodeId, long>();
        foreach (var flow in _flows.Values)
        {
            var bytes = Interlocked.Exchange(ref flow.Bytes, 0);
            if (bytes > 0) result[flow.Owner] = (result.TryGetValue(flow.Owner, out var b) ? b : 0) + bytes;
        }
        return result;
    }
}
