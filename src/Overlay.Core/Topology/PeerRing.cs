namespace Overlay.Topology;

/// <summary>
/// The members of one overlay known to a node (from signaling presence), sorted on the ring. The
/// simulator shares one between many nodes; a real node has its own.
/// </summary>
internal sealed class PeerRing
{
    private readonly List<UInt128> _sorted = [];

    /// <summary>Number of known members.</summary>
    public int Count => _sorted.Count;

    /// <summary>Adds a member; false if already known.</summary>
    public bool Add(UInt128 id)
    {
        var i = _sorted.BinarySearch(id);
        if (i >= 0) return false;
        _sorted.Insert(~i, id);
        return true;
    }

    /// <summary>Removes a member; false if unknown.</summary>
    public bool Remove(UInt128 id)
    {
        var i = _sorted.BinarySearch(id);
        if (i < 0) return false;
        _sorted.RemoveAt(i);
        return true;
    }

    /// <summary>True when <paramref name="id"/> is a known member.</summary>
    public bool Contains(UInt128 id) => _sorted.BinarySearch(id) >= 0;

    /// <summary>The first member at or clockwise after <paramref name="point"/>, or null when empty.</summary>
    public UInt128? FirstAtOrAfter(UInt128 point)
    {
        if (_sorted.Count == 0) return null;
        var i = _sorted.BinarySearch(point);
        if (i < 0) i = ~i;
        return _sorted[i == _sorted.Count ? 0 : i];
    }

    /// <summary>The <paramref name="k"/>-th member (0-based) strictly clockwise after <paramref name="id"/>, skipping <paramref name="id"/> itself.</summary>
    public UInt128? After(UInt128 id, int k)
    {
        var others = Contains(id) ? _sorted.Count - 1 : _sorted.Count;
        if (k >= others) return null;
        var i = _sorted.BinarySearch(id);
        i = i >= 0 ? i + 1 : ~i;
        return _sorted[(i + k) % _sorted.Count];
    }

    /// <summary>The nearest member strictly counter-clockwise before <paramref name="id"/>, or null when there is none but it.</summary>
    public UInt128? Before(UInt128 id)
    {
        var others = Contains(id) ? _sorted.Count - 1 : _sorted.Count;
        if (others == 0) return null;
        var i = _sorted.BinarySearch(id);
        if (i < 0) i = ~i;
        return _sorted[(i + _sorted.Count - 1) % _sorted.Count];
    }

    /// <summary>
    /// Tells <paramref name="member"/>'s switch its nearest members on either side, so its floods cover a ring successor it
    /// could not link (see <see cref="Switching.OverlaySwitch.SetRingNeighbours"/>).
    /// </summary>
    public void TellSwitch(UInt128 member, Switching.OverlaySwitch sw)
    {
        var predecessor = Before(member);
        var successor = After(member, 0);
        sw.SetRingNeighbours(predecessor is { } p ? new Switching.NodeId(p) : null, successor is { } s ? new Switching.NodeId(s) : null);
    }

    /// <summary>A snapshot of the members in ring order.</summary>
    public UInt128[] ToArray() => [.. _sorted];
}
