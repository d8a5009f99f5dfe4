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
/// Both tables are bounded: any member can send frames from made-up addresses, and a full table learns nothing new
/// (frames to what it does not know are flooded, as before they were learned) until entries age out.
/// </summary>
internal sealed class ForwardingTables(int maxAddresses, int maxPaths)
{
    private readonly ConcurrentDictionary<ulong, MacEntry> _macs = new();
    private readonly ConcurrentDictionary<(ulong Source, ulong Destination), FlowEntry> _flows = new();
    private int _macCount, _flowCount;

    public int MacCount => Volatile.Read(ref _macCount);

    public int FlowCount => Volatile.Read(ref _flowCount);

    public bool TryGetMac(ulong mac, out MacEntry entry) => _macs.TryGetValue(mac, out entry!);

    public bool TryGetFlow(ulong source, ulong destination, out FlowEntry flow) => _flows.TryGetValue((source, destination), out flow!);

    /// <summary>Whether a path for the pair may be stored: it replaces one, or the table has room (checked before allocating one).</summary>
    public bool HasRoomForFlow(ulong source, ulong destination) =>
        Volatile.Read(ref _flowCount) < maxPaths || _flows.ContainsKey((source, destination));

    public void SetFlow(ulong source, ulong destination, FlowEntry flow)
    {
        var key = (source, destination);
        if (_flows.TryAdd(key, flow)) Interlocked.Increment(ref _flowCount);
        else _flows[key] = flow;
    }

    /// <summary>
    /// Learns that <paramref name="mac"/> is reached through <paramref name="port"/> and owned by <paramref name="owner"/>;
    /// false when the address is new and the table is full.
    /// </summary>
    public bool Learn(ulong mac, PortEntry port, NodeId owner, long now)
    {
        if (_macs.TryGetValue(mac, out var known))
        {
            if (ReferenceEquals(known.Port, port) && known.Owner == owner && !known.Stale)
            {
                known.LastSeen = now;
                return true;
            }
            // Moved: paths built on the old location are recomputed. Losing a race to another thread learning it is fine.
            if (_macs.TryUpdate(mac, new MacEntry(port, owner, now), known)) known.Stale = true;
            return true;
        }
        if (Volatile.Read(ref _macCount) >= maxAddresses) return false;
        if (_macs.TryAdd(mac, new MacEntry(port, owner, now))) Interlocked.Increment(ref _macCount);
        return true;
    }

    /// <summary>Forgets everything that goes through <paramref name="port"/>.</summary>
    public void Purge(PortEntry port)
    {
        foreach (var (mac, entry) in _macs)
            if (ReferenceEquals(entry.Port, port)) RemoveMac(mac, entry);
        foreach (var (key, flow) in _flows)
            if (ReferenceEquals(flow.Port, port)) RemoveFlow(key, flow);
    }

    /// <summary>Removes entries not seen since <paramref name="oldest"/>, and flows that became invalid.</summary>
    public void Expire(long oldest)
    {
        foreach (var (mac, entry) in _macs)
            if (entry.LastSeen < oldest) RemoveMac(mac, entry);
        foreach (var (key, flow) in _flows)
            if (flow.LastSeen < oldest || !flow.Valid) RemoveFlow(key, flow);
    }

    private void RemoveMac(ulong mac, MacEntry entry)
    {
        if (!_macs.TryRemove(new KeyValuePair<ulong, MacEntry>(mac, entry))) return;
        entry.Stale = true;
        Interlocked.Decrement(ref _macCount);
    }

    private void RemoveFlow((ulong, ulong) key, FlowEntry flow)
    {
        if (_flows.TryRemove(new KeyValuePair<(ulong, ulong), FlowEntry>(key, flow))) Interlocked.Decrement(ref _flowCount);
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
