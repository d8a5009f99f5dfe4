namespace Overlay.Stack.Internal;

/// <summary>
/// Frames handed to the stack, copied into slots allocated once, until the stack's thread takes them: the device's
/// <c>TryWrite</c> never blocks and never allocates; when every slot is full the frame is refused (and counted).
/// </summary>
internal sealed class FrameQueue
{
    private readonly byte[][] _slots;
    private readonly int[] _lengths;
    private readonly Lock _lock = new();
    private int _head;
    private int _count;

    public FrameQueue(int capacity, int maxFrame)
    {
        _slots = new byte[capacity][];
        for (var i = 0; i < capacity; i++) _slots[i] = GC.AllocateUninitializedArray<byte>(maxFrame);
        _lengths = new int[capacity];
    }

    public int MaxFrame => _slots[0].Length;

    public bool IsEmpty => Volatile.Read(ref _count) == 0;

    public bool TryEnqueue(ReadOnlySpan<byte> frame)
    {
        if (frame.Length > MaxFrame) return false;
        lock (_lock)
        {
            if (_count == _slots.Length) return false;
            var index = (_head + _count) % _slots.Length;
            // The copy under the lock is one frame's memcpy; the consumer never holds a slot it has not taken.
            frame.CopyTo(_slots[index]);
            _lengths[index] = frame.Length;
            _count++;
            return true;
        }
    }

    /// <summary>The oldest frame, still in its slot, or false; call <see cref="Release"/> when done with it.</summary>
    public bool TryPeek(out byte[] slot, out int length)
    {
        lock (_lock)
        {
            if (_count == 0)
            {
                slot = [];
                length = 0;
                return false;
            }
            slot = _slots[_head];
            length = _lengths[_head];
            return true;
        }
    }

    public void Release()
    {
        lock (_lock)
        {
            _head = (_head + 1) % _slots.Length;
            _count--;
        }
    }
}
