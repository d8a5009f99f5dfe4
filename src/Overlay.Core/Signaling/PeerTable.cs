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

    public PeerTable(IEnumerable<string> servedOverlays)
    {
        _served = new HashSet<string>(servedOverlays, StringComparer.Ordinal);
        foreach (var o in _served) _byOverlay[o] = new Dictionary<string, string>(StringComparer.Ordinal);
    }

    public bool Serves(string overlayId) => _served.Contains(overlayId);

    /// <summary>The node ID an address announced, if any.</summary>
    public string? NodeIdOf(string address) => _byAddress.TryGetValue(address, out var e) ? e.NodeId : null;

    public string? AddressOf(string overlayId, string nodeId)
        => _byOverlay.TryGetValue(overlayId, out var t) && t.TryGetValue(nodeId, out var a) ? a : null;

    public IReadOnlyDictionary<string, string> Snapshot(string overlayId)
        => _byOverlay.TryGetValue(overlayId, out var t) ? new Dictionary<string, string>(t, StringComparer.Ordinal) : new Dictionary<string, string>();

    /// <summary>
    /// An address announced <paramref name="nodeId"/> serving <paramref name="overlays"/>; it is listed in those of them
    /// that <paramref name="member"/> allows (the rest are remembered, for when its roster groups change).
    /// </summary>
    public List<PeerEvent> Announce(string address, string nodeId, IReadOnlyList<string> overlays, Func<string, bool> member)
    {
        var events = new List<PeerEvent>();
        var shared = overlays.Where(_served.Contains).Distinct(StringComparer.Ordinal).ToArray();
        if (_byAddress.TryGetValue(address, out var old))
        {
            foreach (var o in old.Overlays)
            {
                if (old.NodeId != nodeId || Array.IndexOf(shared, o) < 0 || !member(o)) RemoveEntry(o, old.NodeId, address, PeerChange.Left, events);
            }
        }
        _byAddress[address] = (nodeId, shared);
        foreach (var o in shared)
        {
            if (member(o)) List(o, nodeId, address, events);
        }
        return events;
    }

    /// <summary>Lists or unlists every announced (address, overlay) as <paramref name="member"/> now says.</summary>
    public List<PeerEvent> Reevaluate(Func<string, string, bool> member)
    {
        var events = new List<PeerEvent>();
        foreach (var (address, (nodeId, overlays)) in _byAddress.ToArray())
        {
            foreach (var o in overlays)
            {
                var listed = _byOverlay[o].TryGetValue(nodeId, out var a) && a == address;
                var allowed = member(address, o);
                if (listed && !allowed) RemoveEntry(o, nodeId, address, PeerChange.Left, events);
                else if (!listed && allowed) List(o, nodeId, address, events);
            }
        }
        return events;
    }

    private void List(string overlay, string nodeId, string address, List<PeerEvent> events)
    {
        var table = _byOverlay[overlay];
        if (table.TryGetValue(nodeId, out var existing) && existing == address) return;
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
            events.Add(new PeerEvent(overlay, nodeId, address, change));
        }
    }
}
