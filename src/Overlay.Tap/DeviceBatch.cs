using Overlay.Tap.Offload;

namespace Overlay.Tap;

/// <summary>
/// The device side of what one burst of frames shares, owned by the loop that moves the burst and handed down
/// explicitly: the buffer a device reads into and one segment's scratch (a loop reads one device at a time), and the
/// TCP segments held to be written to a device as one merged packet (<see cref="ICoalescingEthernetDevice"/>). Buffers
/// are allocated on first use and live as long as the batch. One thread at a time uses a batch.
/// </summary>
public class DeviceBatch
{
    private const int MaxFrame = 65535 + 18;
    private byte[]? _read;
    private byte[]? _scratch;
    private TcpCoalescer? _coalescer;

    /// <summary>Creates an empty batch.</summary>
    public DeviceBatch()
    {
    }

    /// <summary>
    /// The queue of a multi-queue device that the thread owning this batch reads, and into which it writes: a frame
    /// written through a queue teaches Linux's tun flow table that queue for the frame's flow, so the host's answers come
    /// back on the same queue, to the same thread (0 where there is one queue; a queue the device lacks means 0).
    /// </summary>
    internal int Queue { get; init; }

    /// <summary>The buffer a device reads into: a virtio_net_hdr and the largest frame.</summary>
    internal byte[] ReadBuffer => _read ??= GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + MaxFrame, pinned: true);

    /// <summary>One segment's worth of scratch, for cutting a large read into frames.</summary>
    internal byte[] Scratch => _scratch ??= GC.AllocateUninitializedArray<byte>(MaxFrame, pinned: true);

    /// <summary>The segments held for a merged write (its <see cref="TcpCoalescer.Owner"/> is the device they are for).</summary>
    internal TcpCoalescer Coalescer => _coalescer ??= new TcpCoalescer();

    /// <summary>The coalescer when it holds segments for <paramref name="device"/>, else null.</summary>
    internal TcpCoalescer? HeldFor(object device) => _coalescer is { Segments: > 0 } held && held.Owner == device ? held : null;
}
