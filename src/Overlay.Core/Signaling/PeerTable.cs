namespace Overlay.Signaling;

/// <summary>
/// Per-overlay peer tables (node ID → address) that follow presence. Not thread-safe: the owning channel
/// serialises access. Every mutation returns the peer events it caused, for the caller to raise outside its lock.
/// </summary>
internal sealed class PeerTable
{
    private readonly HashSet<string> _served;
    private readonly Dictionary<string, Dictionary<string, string>> _byOverlay = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string NodeId, string[] Overlays)> _byAddress = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, string>> _nodeOfAccount = new(StringComparer.Ordinal); // per overlay: account → node ID
    private readonly Func<string, string> _accountOf;
    private readonly Func<string, string, bool> _member;

    /// <param name="servedOverlays">The overlays this node serves.</param>
    /// <param name="accountOf">The account an address belongs to (an XMPP full JID's bare JID).</param>
    /// <param name="member">Whether an address may be listed in an overlay (its roster groups).</param>
    public PeerTable(IEnumerable<string> servedOverlays, Func<string, string> accountOf, Func<string, string, bool> member)
    {
        _served = new HashSet<string>(servedOverlays, StringComparer.Ordinal);
        _accountOf = accountOf;
        _member = member;
        foreach (var o in _served)
        {
            _byOverlay[o] = new Dictionary<string, string>(StringComparer.Ordinal);
            _nodeOfAccount[o] = new Dictionary<string, string>(StringComparer.Ordinal);
        }
    }

    /// <summary>Claims refused: a node ID listed for another account, or a second node ID of one account in one overlay.</summary>
    public long RefusedClaims { get; private set; }

    public bool Serves(string overlayId) => _served.Contains(overlayId);

    /// <summary>The node ID an address announced, if any.</summary>
    public string? NodeIdOf(string address) => _byAddress.TryGetValue(address, out var e) ? e.NodeId : null;

    public string? AddressOf(string overlayId, string nodeId)
        => _byOverlay.TryGetValue(overlayId, out var t) && t.TryGetValue(nodeId, out var a) ? a : null;

    public IReadOnlyDictionary<string, string> Snapshot(string overlayId)
        => _byOverlay.TryGetValue(overlayId, out var t) ? new Dictionary<string, string>(t, StringComparer.Ordinal) : new Dictionary<string, string>();

    /// <summary>
    /// An address announced <paramref name="nodeId"/> serving <paramref name="overlays"/>; it is listed in those of them it
    /// is a member of (the rest are remembered, for when its roster groups change or a conflicting claim goes away).
    /// </summary>
    public List<PeerEvent> Announce(string address, string nodeId, IReadOnlyList<string> overlays)
    {
        var events = new List<PeerEvent>();
        var shared = overlays.Where(_served.Contains).Distinct(StringComparer.Ordinal).ToArray();
        if (_byAddress.TryGetValue(address, out var old))
        {
            foreach (var o in old.Overlays)
            {
                if (old.NodeId != nodeId || Array.IndexOf(shared, o) < 0 || !_member(address, o)) RemoveEntry(o, old.NodeId, address, PeerChange.Left, events);
            }
        }
        _byAddress[address] = (nodeId, shared);
        foreach (var o in shared)
        {
            if (_member(address, o)) List(o, nodeId, address, events);
        }
        return events;
    }

    /// <summary>Lists or unlists every announced (address, overlay) as membership now says.</summary>
    public List<PeerEvent> Reevaluate()
    {
        var events = new List<PeerEvent>();
        Reevaluate(events);
        return events;
    }

    private void Reevaluate(List<PeerEvent> events)
    {
        foreach (var (address, (nodeId, overlays)) in _byAddress.ToArray())
        {
            foreach (var o in overlays)
            {
                var listed = _byOverlay[o].TryGetValue(nodeId, out var a) && a == address;
                var allowed = _member(address, o);
                if (listed && !allowed) RemoveEntry(o, nodeId, address, PeerChange.Revoked, events);
                else if (!listed && allowed) List(o, nodeId, address, events);
            }
        }
    }

    /// <summary>
    /// Lists the node at the address in the overlay. A node ID belongs to the account that listed it first, and an account
    /// has one node per overlay: another account claiming a listed node ID (a copied configuration, an impostor), or a
    /// second node ID from one account, is refused while the first is listed. One account's node may move to a new address
    /// (a reconnect with a new resource).
    /// </summary>
    private void List(string overlay, string nodeId, string address, List<PeerEvent> events)
    {
        var table = _byOverlay[overlay];
        if (table.TryGetValue(nodeId, out var existing) && existing == address) return;
        var account = _accountOf(address);
        var accounts = _nodeOfAccount[overlay];
        if ((existing is not null && _accountOf(existing) != account)
            || (accounts.TryGetValue(account, out var held) && held != nodeId))
        {
            RefusedClaims++;
            return;
        }
        accounts[account] = nodeId;
        if (existing is not null && _byAddress.TryGetValue(existing, out var other) && other.NodeId == nodeId)
        {
            // The node moved to a new address (e.g. reconnected with a new resource): the old one no longer serves it.
            _byAddress[existing] = (other.NodeId, other.Overlays.Where(x => x != overlay).ToArray());
        }
        table[nodeId] = address;
        events.Add(new PeerEvent(overlay, nodeId, address, PeerChange.Joined));
    }

    /// <summary>An address went unavailable.</summary>
    public List<PeerEvent> Remove(string address, PeerChange change = PeerChange.Left)
    {
        var events = new List<PeerEvent>();
        if (!_byAddress.Remove(address, out var old)) return events;
        foreach (var o in old.Overlays) RemoveEntry(o, old.NodeId, address, change, events);
        if (events.Count > 0) Reevaluate(events); // a claim refused while this one held the node ID may be listed now
        return events;
    }

    /// <summary>Removes every address matching <paramref name="predicate"/> (e.g. a bare JID left the roster).</summary>
    public List<PeerEvent> RemoveWhere(Func<string, bool> predicate, PeerChange change)
    {
        var events = new List<PeerEvent>();
        foreach (var address in _byAddress.Keys.Where(predicate).ToList()) events.AddRange(Remove(address, change));
        return events;
    }

    private void RemoveEntry(string overlay, string nodeId, string address, PeerChange change, List<PeerEvent> events)
    {
        if (_byOverlay.TryGetValue(overlay, out var table) && table.TryGetValue(nodeId, out var a) && a == address)
        {
            table.Remove(nodeId);
            _nodeOfAccount[overlay].Remove(_accountOf(address));
            events.Add(new PeerEvent(overlay, nodeId, address, change));
        }
    }
}
