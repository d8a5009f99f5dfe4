using System.Net;
using Overlay.Switching;
using Overlay.Tap;

namespace Overlay.Transport;

/// <summary>Work to finish when a <see cref="DataPathBatch"/> completes (see <see cref="DataPathBatch.Defer"/>).</summary>
internal interface IBurstCompletion
{
    void OnBurstComplete(DataPathBatch batch);
}

/// <summary>
/// What one burst of frames shares on its way through the node, owned by the <see cref="EventLoop"/> that moves it and
/// passed down as an argument (socket → link → switch → port, device → switch → link → socket), never found through
/// thread-local state: the datagrams to send with one <c>sendmmsg(2)</c> per socket, the device writes waiting to be
/// merged and the device's read buffers (<see cref="DeviceBatch"/>), the scratch buffers links open and seal in, and
/// the devices to finish with when the burst ends. <see cref="Complete"/> ends a burst. One thread uses a batch at a
/// time; its native memory is freed by <see cref="Dispose"/>.
/// </summary>
/// <remarks>Where no batch is at hand (a timer, a control-path send, an in-memory device) callers pass null and everything happens at once.</remarks>
internal sealed class DataPathBatch : DeviceBatch, IFrameBatch, IDisposable
{
    private const int BufferSize = 65536 + 64;
    private const int MaxCompletions = 4;
    private readonly SendQueue? _sends = Tap.Linux.LibC.IsLinux64 ? new SendQueue() : null;
    private readonly IBurstCompletion?[] _deferred = new IBurstCompletion?[MaxCompletions];
    private readonly byte[]?[] _buffers = new byte[]?[8];
    private int _deferredCount;
    private int _depth;
    private bool _completing;
    private byte[]? _flood;
    private TimeProvider? _clock;
    private long _stamp;

    /// <summary>A batch whose device writes and polls go through the NIC queue <paramref name="queue"/> (its loop's).</summary>
    internal DataPathBatch(int queue = 0)
    {
        Queue = queue;
    }

    /// <summary>Datagrams queued and not yet sent.</summary>
    internal int QueuedDatagrams => _sends?.Count ?? 0;

    /// <summary>
    /// Queues one datagram for <paramref name="mux"/> (copied); false when it must be sent at once instead (too large,
    /// or no sendmmsg here). A full queue, or one holding another socket's datagrams, is sent first.
    /// </summary>
    internal bool TryQueue(UdpMux mux, ReadOnlySpan<byte> datagram, SocketAddress destination)
    {
        if (_sends is not { } queue || !SendQueue.Fits(datagram.Length, destination.Size) || !queue.MayAdd(datagram)) return false;
        if (queue.Count == SendQueue.Capacity || (queue.Mux is not null && queue.Mux != mux)) queue.Flush();
        queue.Add(mux, datagram, destination);
        return true;
    }

    /// <summary>
    /// The send queue's next slot, to seal one datagram of up to <see cref="SendQueue.SlotSize"/> bytes in: queued from
    /// there (<see cref="TryQueue"/>) it is not copied again. Empty where there is no queue, or while the slot is lent to
    /// a send that this one is nested in (use <see cref="RentBuffer"/> then). Until <see cref="ReturnSendSlot"/>; while
    /// lent, a datagram built elsewhere is not queued but sent at once, so it cannot overwrite the slot.
    /// </summary>
    internal Span<byte> RentSendSlot() => _sends is { } queue ? queue.Lend() : default;

    /// <summary>Ends the loan of <see cref="RentSendSlot"/> (whether or not its datagram was queued).</summary>
    internal void ReturnSendSlot() => _sends?.EndLoan();

    /// <summary>
    /// <paramref name="time"/>'s timestamp, read once per burst: what the packets of a burst are stamped with when they
    /// arrive (a link's silence is measured in seconds, and a burst takes microseconds), where a read per packet cost
    /// ~0.1 us on a VM whose clock is kvm-clock.
    /// </summary>
    internal long Timestamp(TimeProvider time)
    {
        if (!ReferenceEquals(_clock, time))
        {
            _stamp = time.GetTimestamp();
            _clock = time;
        }
        return _stamp;
    }

    /// <summary>Sends the queued datagrams now (for a caller that must keep order with what another thread sends).</summary>
    internal void FlushSends() => _sends?.Flush();

    /// <summary>Asks for <paramref name="completion"/> to run once when the batch completes, before it sends (each once, however often asked).</summary>
    internal void Defer(IBurstCompletion completion)
    {
        for (var i = 0; i < _deferredCount; i++)
            if (ReferenceEquals(_deferred[i], completion)) return;
        if (_deferredCount == MaxCompletions) RunDeferred(); // more devices than slots in one burst: complete those so far now
        _deferred[_deferredCount++] = completion;
    }

    /// <summary>
    /// Ends a burst: the deferred completions run (merged writes go to their devices, which are polled for the host's
    /// immediate answers, whose frames join this batch), then the queued datagrams leave. Called from within a
    /// completion (a device read that the completion started ends its own burst), it only sends: the outer call finishes.
    /// </summary>
    internal void Complete()
    {
        if (!_completing)
        {
            _completing = true;
            try
            {
                RunDeferred();
            }
            finally
            {
                _completing = false;
            }
        }
        FlushSends();
        _clock = null; // the next burst reads the clock again
    }

    private void RunDeferred()
    {
        // A completion may defer again (its frames produced more): run until none is left, bounded.
        for (var round = 0; _deferredCount > 0 && round < MaxCompletions; round++)
        {
            var count = _deferredCount;
            Span<IBurstCompletion?> items = [_deferred[0], _deferred[1], _deferred[2], _deferred[3]];
            _deferredCount = 0;
            Array.Clear(_deferred);
            for (var i = 0; i < count; i++) items[i]!.OnBurstComplete(this);
        }
        _deferredCount = 0;
        Array.Clear(_deferred);
    }

    /// <summary>
    /// A buffer for opening or sealing one link packet, until the matching <see cref="ReturnBuffer"/>. Nested uses get
    /// different buffers: a link's send can run a peer's receive within the same batch (an in-memory path), which must
    /// not overwrite the buffer still in use below it.
    /// </summary>
    internal byte[] RentBuffer()
    {
        var depth = _depth++;
        if (depth >= _buffers.Length) return new byte[BufferSize]; // pathological nesting: correct, if not free
        return _buffers[depth] ??= GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
    }

    /// <summary>Gives back the buffer of the last <see cref="RentBuffer"/>.</summary>
    internal void ReturnBuffer() => _depth--;

    /// <summary>Room for a flood header and the largest frame, to write a flood packet's payload in.</summary>
    internal byte[] FloodBuffer => _flood ??= GC.AllocateUninitializedArray<byte>(Switching.Flood.FloodHeader.Length + ushort.MaxValue, pinned: true);

    /// <summary>Frees the native send queue (what is still queued is dropped).</summary>
    public void Dispose() => _sends?.Dispose();
}
