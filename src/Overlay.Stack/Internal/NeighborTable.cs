namespace Overlay.Stack.Internal;

/// <summary>
/// IP address to MAC address (ARP, RFC 826; Neighbor Discovery, RFC 4861), bounded: the table is fed by the network, so
/// past its capacity an entry is replaced rather than added. Used on the stack's thread only.
/// </summary>
internal sealed class NeighborTable(int capacity)
{
    private readonly Dictionary<UInt128, ulong> _entries = new(Math.Min(capacity, 1024));
    private readonly Queue<UInt128> _order = new();

    public int Count => _entries.Count;

    public bool TryGet(UInt128 address, out ulong mac) => _entries.TryGetValue(address, out mac);

    /// <summary>Learns or refreshes an entry; returns false when another had to go to make room.</summary>
    public bool Set(UInt128 address, ulong mac)
    {
        if (_entries.ContainsKey(address))
        {
            _entries[address] = mac;
            return true;
        }
        var evicted = false;
        while (_entries.Count >= capacity && _order.TryDequeue(out var oldest))
            evicted |= _entries.Remove(oldest);
        _entries[address] = mac;
        _order.Enqueue(address);
        return !evicted;
    }
}
