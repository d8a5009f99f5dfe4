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

/// <summary>
/// Where a MAC address lives: the port towards it and the switch it was learned from. Immutable but for its timestamp.
/// A claimed entry makes that switch the address's owner (its host's own broadcast or multicast taught it); an unclaimed
/// one, taught by an unknown-unicast flood, which a relay may send in its own name for another switch's host, gives
/// the way only.
/// </summary>
internal sealed class MacEntry(PortEntry port, NodeId owner, long now, bool claimed = true)
{
    public PortEntry Port { get; } = port;
    public NodeId Owner { get; } = owner;
    public bool Claimed { get; } = claimed;
    public long LastSeen = now;
    public volatile bool Stale;
}

/// <summary>What <see cref="ForwardingTables.Learn"/> did.</summary>
internal enum LearnResult
{
    Learned,
    /// <summary>New, and the table is full.</summary>
    TableFull,
    /// <summary>New, and its owner already has its share of the table.</summary>
    OwnerFull,
    /// <summary>Another switch owns the address.</summary>
    NotOwner,
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
internal sealed class ForwardingTables(int maxAddresses, int maxPaths, int maxAddressesPerOwner)
{
    private readonly ConcurrentDictionary<ulong, MacEntry> _macs = new();
    private readonly ConcurrentDictionary<NodeId, int> _perOwner = new();
    private readonly ConcurrentDictionary<ulong, NodeId> _bound = new(); // addresses a switch advertised as its own
    private readonly ConcurrentDictionary<(ulong Source, ulong Destination), FlowEntry> _flows = new();
    private int _macCount, _flowCount;

    public int MacCount => Volatile.Read(ref _macCount);

    public int FlowCount => Volatile.Read(ref _flowCount);

    /// <summary>The address's entry while it leads somewhere: not replaced, and its port still up.</summary>
    public bool TryGetLiveMac(ulong mac, out MacEntry entry) => _macs.TryGetValue(mac, out entry!) && !entry.Stale && entry.Port.Alive;

    public bool TryGetFlow(ulong source, ulong destination, out FlowEntry flow) => _flows.TryGetValue((source, destination), out flow!);

    /// <summary>
    /// The path for the pair while it still holds: its port alive and, for a path installed while the destination's
    /// address was unknown (no <see cref="FlowEntry.Target"/>: taken from the port a reply came in on), only until the
    /// address table learns that address. From then on the table, which floods teach along one loop-free tree per root,
    /// decides: a provisional path kept past that could point at a switch whose own path points back (after a crash two
    /// relays were seen to pass a conversation's frames to each other for good while their tables agreed on another way).
    /// </summary>
    public bool TryGetCurrentFlow(ulong source, ulong destination, out FlowEntry flow) =>
        _flows.TryGetValue((source, destination), out flow!) && flow.Valid
        && (flow.Target is not null || !TryGetLiveMac(destination, out _));

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
    /// Learns that <paramref name="mac"/> is reached through <paramref name="port"/> from <paramref name="owner"/>, which
    /// owns it when <paramref name="claim"/> (else the entry gives the way only, and gives way to a claim).
    /// </summary>
    public LearnResult Learn(ulong mac, PortEntry port, NodeId owner, long now, bool claim = true)
    {
        // An address belongs to the switch that advertised it, else to the one it was first claimed by while that entry
        // lives: a member sending from another's address must not take over the traffic to it.
        if (OwnedByOther(mac, owner, out var known)) return LearnResult.NotOwner;
        if (known is not null)
        {
            claim |= known.Claimed && known.Owner == owner && !known.Stale; // the owner's own unknown unicast keeps its claim
            // A relay's flood fills a gap only: moving a live entry towards the relay could loop traffic between the two.
            if (!claim && !known.Stale && !ReferenceEquals(known.Port, port)) return LearnResult.Learned;
            if (ReferenceEquals(known.Port, port) && known.Owner == owner && known.Claimed == claim && !known.Stale)
            {
                known.LastSeen = now;
                return LearnResult.Learned;
            }
            // Moved (or claimed now): paths built on the old entry are recomputed. Losing a race to another thread is fine.
            if (_macs.TryUpdate(mac, new MacEntry(port, owner, now, claim), known))
            {
                known.Stale = true;
                if (known.Owner != owner)
                {
                    Count(known.Owner, -1);
                    Count(owner, +1);
                }
            }
            return LearnResult.Learned;
        }
        if (Volatile.Read(ref _macCount) >= maxAddresses) return LearnResult.TableFull;
        if (_perOwner.TryGetValue(owner, out var owned) && owned >= maxAddressesPerOwner) return LearnResult.OwnerFull;
        if (_macs.TryAdd(mac, new MacEntry(port, owner, now, claim)))
        {
            Interlocked.Increment(ref _macCount);
            Count(owner, +1);
        }
        return LearnResult.Learned;
    }

    /// <summary>True when another switch than <paramref name="self"/> advertised <paramref name="mac"/> or claimed it and its entry lives.</summary>
    public bool IsOwnedByOther(ulong mac, NodeId self) => OwnedByOther(mac, self, out _);

    /// <summary>The ownership rule, once: <paramref name="known"/> is the address's entry, if it has one.</summary>
    private bool OwnedByOther(ulong mac, NodeId self, out MacEntry? known)
    {
        var found = _macs.TryGetValue(mac, out known);
        return (_bound.TryGetValue(mac, out var bound) && bound != self) || (found && known!.Claimed && known.Owner != self && !known.Stale);
    }

    /// <summary>
    /// The switch an address belongs to: the one that advertised it, else the one that claimed it (while fresh);
    /// <paramref name="known"/> is its learned entry, if it has one.
    /// </summary>
    public bool TryGetOwner(ulong mac, out NodeId owner, out MacEntry? known)
    {
        var found = _macs.TryGetValue(mac, out known);
        if (_bound.TryGetValue(mac, out owner)) return true;
        var owned = found && known!.Claimed && !known.Stale;
        owner = owned ? known!.Owner : default;
        return owned;
    }

    /// <summary>Addresses learned per owner switch (a member's share of the table is bounded).</summary>
    public int CountOwnedBy(NodeId owner) => _perOwner.TryGetValue(owner, out var n) ? n : 0;

    /// <summary>
    /// Binds <paramref name="mac"/> to <paramref name="owner"/>, which advertised it: no other switch's frames teach it.
    /// An advertisement is a claim like any other: one for an address another switch already holds is refused (false).
    /// </summary>
    public bool Bind(ulong mac, NodeId owner)
    {
        if (IsOwnedByOther(mac, owner)) return false;
        _bound[mac] = owner;
        return true;
    }

    /// <summary>Forgets the bindings of a switch that left.</summary>
    public void Unbind(NodeId owner)
    {
        foreach (var (mac, bound) in _bound)
            if (bound == owner) _bound.TryRemove(new KeyValuePair<ulong, NodeId>(mac, bound));
    }

    private void Count(NodeId owner, int delta)
    {
        var n = _perOwner.AddOrUpdate(owner, static (_, d) => Math.Max(0, d), static (_, c, d) => c + d, delta);
        if (n <= 0) _perOwner.TryRemove(new KeyValuePair<NodeId, int>(owner, n));
    }

    /// <summary>
    /// Forgets the way to <paramref name="destination"/> through <paramref name="port"/>: the pair's path, and the address's
    /// entry when it leads there (see <see cref="OverlaySwitch"/>'s loop breaking).
    /// </summary>
    public void ForgetWay(ulong source, ulong destination, PortEntry port)
    {
        if (_flows.TryGetValue((source, destination), out var flow) && ReferenceEquals(flow.Port, port)) RemoveFlow((source, destination), flow);
        if (_macs.TryGetValue(destination, out var entry) && ReferenceEquals(entry.Port, port)) RemoveMac(destination, entry);
    }

    /// <summary>Forgets everything that goes through <paramref name="port"/>.</summary>
    public void Purge(PortEntry port)
    {
        foreach (var (mac, entry) in _macs)
            if (ReferenceEquals(entry.Port, port)) RemoveMac(mac, entry);
        foreach (var (key, flow) in _flows)
            if (ReferenceEquals(flow.Port, port)) RemoveFlow(key, flow);
    }

    /// <summary>
    /// Forgets the paths towards <paramref name="owner"/>'s addresses that do not leave by <paramref name="direct"/>, the
    /// port of a link to it that just came up: its addresses are then reached over that link (a directly linked owner is
    /// the shortest path), and its switch accepts their plain frames from that link only.
    /// </summary>
    public void PurgeDetours(NodeId owner, PortEntry direct)
    {
        foreach (var (key, flow) in _flows)
            if (!ReferenceEquals(flow.Port, direct) && (flow.Owner == owner || TryGetOwner(key.Destination, out var o, out _) && o == owner))
                RemoveFlow(key, flow);
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
        Count(entry.Owner, -1);
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
