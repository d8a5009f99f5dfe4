namespace Overlay.Switching.Multicast;

/// <summary>
/// Multicast subscriptions snooped from IGMP/MLD reports: per group MAC, the switches (by node ID, the
/// root of the flooded report) with subscribers, and whether the local host subscribed. A group with no
/// subscription known is flooded to all; a known one only along arcs holding a subscriber.
/// </summary>
internal sealed class GroupTable
{
    private readonly Dictionary<ulong, Group> _groups = [];
    private readonly Lock _lock = new();

    private sealed class Group
    {
        public readonly Dictionary<NodeId, long> Switches = [];
        public long LocalUntil = long.MinValue;
    }

    /// <summary>Records a join or leave by the switch <paramref name="member"/> (the local one when it is <paramref name="self"/>).</summary>
    public void Update(ulong group, NodeId member, NodeId self, bool join, long expires)
    {
        lock (_lock)
        {
            if (!_groups.TryGetValue(group, out var g))
            {
                if (!join) return;
                _groups[group] = g = new Group();
            }
            if (member == self) g.LocalUntil = join ? expires : long.MinValue;
            else if (join) g.Switches[member] = expires;
            else g.Switches.Remove(member);
        }
    }

    /// <summary>True when anything is known of the group (so it is pruned rather than flooded).</summary>
    public bool IsKnown(ulong group, long now)
    {
        lock (_lock)
            return _groups.TryGetValue(group, out var g) && (g.LocalUntil > now || g.Switches.Count > 0);
    }

    /// <summary>True when the local host subscribed.</summary>
    public bool HasLocal(ulong group, long now)
    {
        lock (_lock)
            return _groups.TryGetValue(group, out var g) && g.LocalUntil > now;
    }

    /// <summary>True when a subscribed switch lies in the clockwise arc [from, bound).</summary>
    public bool HasSubscriberIn(ulong group, NodeId from, NodeId bound)
    {
        lock (_lock)
        {
            if (!_groups.TryGetValue(group, out var g)) return false;
            foreach (var member in g.Switches.Keys)
                if (member == from || from.ArcContains(member, bound)) return true;
            return false;
        }
    }

    /// <summary>Drops subscriptions not refreshed by <paramref name="now"/>.</summary>
    public void Expire(long now)
    {
        lock (_lock)
        {
            foreach (var (key, g) in _groups.ToArray())
            {
                foreach (var (member, until) in g.Switches.ToArray())
                    if (until <= now) g.Switches.Remove(member);
                if (g.Switches.Count == 0 && g.LocalUntil <= now) _groups.Remove(key);
            }
        }
    }

    /// <summary>Forgets the subscriptions of a switch that left.</summary>
    public void Forget(NodeId member)
    {
        lock (_lock)
            foreach (var g in _groups.Values) g.Switches.Remove(member);
    }
}
