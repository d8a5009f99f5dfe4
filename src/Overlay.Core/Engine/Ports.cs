using System.Buffers;
using Overlay.Links;
using Overlay.Switching;
using Overlay.Switching.Flood;
using Overlay.Tap;
using Overlay.Transport;

namespace Overlay.Engine;

/// <summary>
/// The switch's local port: the overlay's virtual NIC. Frames that come with a batch (a burst a loop moves) may be
/// merged in it (TCP segments of one stream become one write); when the batch completes they are written, and the NIC
/// is read for what the host answered straight away, so a reply leaves without another thread's wake-up.
/// </summary>
internal sealed class DevicePort(IEthernetDevice device) : ISwitchPort, IBurstCompletion
{
    private readonly ICoalescingEthernetDevice? _coalescing = device as ICoalescingEthernetDevice;
    private readonly IPolledEthernetDevice? _polled = device as IPolledEthernetDevice;

    public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
    {
        if (batch is not DataPathBatch burst || (_coalescing is null && _polled is null)) return device.TryWrite(frame);
        burst.Defer(this);
        return _coalescing is { } coalescing ? coalescing.TryWrite(frame, burst) : device.TryWrite(frame);
    }

    public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) => false;

    /// <summary>End of the burst: merged frames go to the host, and what the host answered comes back in the same batch.</summary>
    public void OnBurstComplete(DataPathBatch batch)
    {
        _coalescing?.FlushWrites(batch);
        // The queue the batch's loop writes into and reads: where the host's answers to those frames come.
        if (_polled is { } polled) polled.PollReady((uint)batch.Queue < (uint)polled.ReadinessDescriptors.Count ? batch.Queue : 0, batch);
    }
}

/// <summary>Frames the NIC hands over go into the switch with their batch; what a burst of them sends on links leaves in one system call per socket.</summary>
internal sealed class DeviceInput(OverlaySwitch sw) : IBatchingFrameSink
{
    /// <summary>A batch for a NIC that sends from its own threads (the userspace stack): its runs of frames leave with one sendmmsg per socket.</summary>
    public DeviceBatch CreateBatch() => new DataPathBatch();

    public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => sw.OnLocalFrame(frame, batch as DataPathBatch);

    /// <summary>
    /// The device read a burst: complete the batch now, so a lone frame (a ping) leaves before the device is read again.
    /// Within a completion (the NIC polled at the end of a link's burst) this only sends, in order.
    /// </summary>
    public void OnBurstEnd(DeviceBatch batch) => (batch as DataPathBatch)?.Complete();
}

/// <summary>
/// One queue of the NIC on an event loop: when readable, read what the host sent, on the loop's thread. A device that
/// failed (its interface deleted) would poll readable for ever; the loop stops watching it.
/// </summary>
internal sealed class DeviceReadiness(IPolledEthernetDevice device, int queue, EventLoop loop) : IReadableSource
{
    private long _registration = -1;

    /// <summary>Starts watching the queue's descriptor.</summary>
    public void Register() => _registration = loop.Register(device.ReadinessDescriptors[queue], this);

    /// <summary>Stops watching it (before the descriptor closes).</summary>
    public void Unregister() => loop.Unregister(_registration);

    public void OnReadable(DataPathBatch batch)
    {
        if (device.PollReady(queue, batch) < 0) Unregister();
    }
}

/// <summary>A switch port that is one TinCan link: plain frames as they are, flood frames behind their header.</summary>
internal sealed class LinkPort(TinCanLink link) : ISwitchPort
{
    private const int StackFlood = 2048;

    public TinCanLink Link => link;

    public int MaxFrameLength => link.MaxFrameLength;

    public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) => link.TrySend(frame, PacketKind.Frame, batch as DataPathBatch);

    public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch)
    {
        if (frame.Length > ushort.MaxValue) return false;
        var length = FloodHeader.Length + frame.Length;
        if (batch is DataPathBatch burst) return SendFlood(header, frame, burst.FloodBuffer, burst);
        if (length <= StackFlood) return SendFlood(header, frame, stackalloc byte[StackFlood], burst: null);
        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            return SendFlood(header, frame, rented, burst: null);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private bool SendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, Span<byte> buffer, DataPathBatch? burst)
    {
        header.Write(buffer);
        frame.CopyTo(buffer[FloodHeader.Length..]);
        return link.TrySend(buffer[..(FloodHeader.Length + frame.Length)], PacketKind.FloodFrame, burst);
    }
}
