namespace Overlay.Switching.Flood;

/// <summary>
/// Remembers the most recent (root, sequence) pairs seen, as defence in depth: bounded flooding
/// delivers each frame once by construction, but a topology change mid-flood or a hostile peer must
/// not make a frame loop or arrive twice. A fixed table, indexed by hash, no allocation: an old entry
/// is overwritten by a newer one that hashes to the same slot.
/// </summary>
internal sealed class DuplicateCache
{
    private readonly (UInt128 Root, uint Sequence, bool Used)[] _slots;
    private readonly int _mask;
    private readonly Lock _lock = new();

    public DuplicateCache(int capacity = 4096)
    {
        var size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity);
        _slots = new (UInt128, uint, bool)[size * 2];
        _mask = size - 1;
    }

    /// <summary>Records (root, sequence); false if it was already recorded.</summary>
    public bool TryAdd(NodeId root, uint sequence)
    {
        var hash = (int)((uint)(root.Value.GetHashCode() ^ (int)(sequence * 0x9E3779B1)) & (uint)_mask) * 2;
        lock (_lock)
        {
            // Two ways per set: check both, replace the older-looking one (round robin by sequence parity).
            for (var i = 0; i < 2; i++)
            {
                ref var slot = ref _slots[hash + i];
                if (slot.Used && slot.Root == root.Value && slot.Sequence == sequence) return false;
            }
            ref var victim = ref _slots[hash + (_slots[hash].Used ? 1 : 0)];
            if (_slots[hash].Used && _slots[hash + 1].Used) victim = ref _slots[hash + (int)(sequence & 1)];
            victim = (root.Value, sequence, true);
            return true;
        }
    }
}
