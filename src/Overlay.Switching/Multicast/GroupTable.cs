namespace Overlay.Switching.Multicast;

/// <summary>
/// Multicast subscriptions snooped from IGMP/MLD reports: per group MAC, the switches (by node ID, the
/// root of the flooded report) with subscribers, and whether the local host subscribed. A group with no
/// subscription known is flooded to all; a known one only along arcs holding a subscriber.
/// </summary>
/// <remarks>
/// Bounded: at most <c>maxGroups</c> groups, and each remote switch subscribed to at most <c>maxGroupsPerMember</c>
/// of them, so a member announcing made-up groups cannot grow the table (joins past a bound are refused and counted).
/// </remarks>
internal sealed class GroupTable(int maxGroups = 4_096, int maxGroupsPerMember = 256)
{
    private readonly Dictionary<ulong, Group> _groups = [];
    private readonly Dictionary<NodeId, int> _perMember = [];
    private readonly Lock _lock = new();

    private sealed class Group
    {
        public readonly Dictionary<NodeId, long> Switches = [];
        public long LocalUntil = long.MinValue;
    }

    /// <summary>
    /// Records a join or leave by the switch <paramref name="member"/> (the local one when it is <paramref name="self"/>);
    /// false when a join was refused because a bound was reached.
    /// </summary>
    public bool Update(ulong group, NodeId member, NodeId self, bool join, long expires)
    {
        lock (_lock)
        {
            if (!_groups.TryGetValue(group, out var g))
            {
                if (!join) return true;
                if (_groups.Count >= maxGroups) return false;
                _groups[group] = g = new Group();
            }
            if (member == self)
            {
                g.LocalUntil = join ? expires : long.MinValue;
            }
            else if (join)
            {
                if (!g.Switches.ContainsKey(member))
                {
                    if (_perMember.GetValueOrDefault(member) >= maxGroupsPerMember)
                    {
                        if (g.Switches.Count == 0 && g.LocalUntil == long.MinValue) _groups.Remove(group);
                        return false;
                    }
                    _perMember[member] = _perMember.GetValueOrDefault(member) + 1;
                }
                g.Switches[member] = expires;
            }
            else
            {
                Unsubscribe(g, member);
            }
            return true;
        }
    }

    /// <summary>Groups known (for status and tests).</summary>
    public int Count
    {
        get { lock (_lock) return _groups.Count; }
    }

    private void Unsubscribe(Group g, NodeId member)
    {
        if (!g.Switches.Remove(member)) return;
        if (_perMember.TryGetValue(member, out var n) && n > 1) _perMember[member] = n - 1;
        else _perMember.Remove(member);
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
                    if (until <= now) Unsubscribe(g, member);
                if (g.Switches.Count == 0 && g.LocalUntil <= now) _groups.Remove(key);
            }
        }
    }

    /// <summary>Forgets the subscriptions of a switch that left.</summary>
    public void Forget(NodeId member)
    {
        lock (_lock)
            foreach (var g in _groups.Values) Unsubscribe(g, member);
    }
}
