namespace Overlay.Signaling.InProcess;

/// <summary>
/// An in-process stand-in for the XMPP server: the embedded default when several nodes run in one
/// process (demos, tests, simulation). Accounts are grouped like a shared roster group: two accounts see
/// each other's presence when they share a group. Messages are routed to any online address, as a real
/// server would; the receiving channel applies the same membership checks as over XMPP.
/// </summary>
public sealed class InProcessSignalingHub
{
    private readonly object _gate = new();
    private readonly Dictionary<string, HashSet<string>> _groups = new(StringComparer.Ordinal);
    private readonly Dictionary<string, InProcessSignalingChannel> _online = new(StringComparer.Ordinal);
    private int _nextInstance;

    /// <summary>Puts an account in a roster group (creating it). Members of one group are each other's roster.</summary>
    internal void AddToGroup(string group, string account)
    {
        ArgumentException.ThrowIfNullOrEmpty(group);
        ArgumentException.ThrowIfNullOrEmpty(account);
        List<(InProcessSignalingChannel To, InProcessSignalingChannel From)> presences;
        lock (_gate)
        {
            if (!_groups.TryGetValue(group, out var members)) _groups[group] = members = new HashSet<string>(StringComparer.Ordinal);
            if (!members.Add(account)) return;
            presences = MutualPresencesLocked(account);
        }
        foreach (var (to, from) in presences) to.DeliverPresence(from.LocalAddress!, from.Announcement);
    }

    /// <summary>Removes an account from a group; peers that no longer share a group forget each other.</summary>
    internal void RemoveFromGroup(string group, string account)
    {
        List<InProcessSignalingChannel> online;
        lock (_gate)
        {
            if (!_groups.TryGetValue(group, out var members) || !members.Remove(account)) return;
            online = [.. _online.Values];
        }
        foreach (var c in online) c.RosterChanged();
    }

    /// <summary>Creates a channel for the options' account; it goes online at <c>ConnectAsync</c>.</summary>
    internal InProcessSignalingChannel CreateChannel(InProcessChannelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var instance = Interlocked.Increment(ref _nextInstance);
        return new InProcessSignalingChannel(this, options, $"{options.Account}/{instance}");
    }

    internal bool AreRosterMembers(string accountA, string accountB)
    {
        lock (_gate)
        {
            foreach (var members in _groups.Values)
            {
                if (members.Contains(accountA) && members.Contains(accountB)) return true;
            }
            return false;
        }
    }

    /// <summary>The groups both accounts are in: how <paramref name="accountA"/>'s roster shows <paramref name="accountB"/>.</summary>
    internal string[] SharedGroups(string accountA, string accountB)
    {
        lock (_gate) return [.. _groups.Where(g => g.Value.Contains(accountA) && g.Value.Contains(accountB)).Select(g => g.Key)];
    }

    internal static string AccountOf(string address)
    {
        var slash = address.IndexOf('/', StringComparison.Ordinal);
        return slash < 0 ? address : address[..slash];
    }

    internal void GoOnline(InProcessSignalingChannel channel)
    {
        List<(InProcessSignalingChannel To, InProcessSignalingChannel From)> presences;
        lock (_gate)
        {
            _online[channel.LocalAddress!] = channel;
            presences = MutualPresencesLocked(channel.Account);
        }
        foreach (var (to, from) in presences) to.DeliverPresence(from.LocalAddress!, from.Announcement);
    }

    internal void GoOffline(InProcessSignalingChannel channel)
    {
        List<InProcessSignalingChannel> others;
        lock (_gate)
        {
            if (!_online.Remove(channel.LocalAddress!)) return;
            others = _online.Values.Where(o => AreRosterMembersLocked(o.Account, channel.Account)).ToList();
        }
        foreach (var o in others) o.DeliverPresence(channel.LocalAddress!, null);
    }

    /// <summary>Routes a payload like a server: to any online address, whatever the rosters say.</summary>
    internal bool Route(string fromAddress, string toAddress, string payload)
    {
        InProcessSignalingChannel? target;
        lock (_gate) _online.TryGetValue(toAddress, out target);
        if (target is null) return false;
        target.DeliverPayload(fromAddress, payload);
        return true;
    }

    private List<(InProcessSignalingChannel, InProcessSignalingChannel)> MutualPresencesLocked(string account)
    {
        var result = new List<(InProcessSignalingChannel, InProcessSignalingChannel)>();
        var mine = _online.Values.Where(c => c.Account == account).ToList();
        foreach (var other in _online.Values)
        {
            foreach (var me in mine)
            {
                if (ReferenceEquals(me, other) || !AreRosterMembersLocked(me.Account, other.Account)) continue;
                result.Add((other, me));
                result.Add((me, other));
            }
        }
        return result;
    }

    private bool AreRosterMembersLocked(string a, string b)
    {
        foreach (var members in _groups.Values)
        {
            if (members.Contains(a) && members.Contains(b)) return true;
        }
        return false;
    }
}
