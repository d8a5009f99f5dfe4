using System.Net.NetworkInformation;

namespace Overlay.Tap;

/// <summary>
/// A virtual Ethernet NIC: frames the host's network stack sends come out of it (delivered to an
/// <see cref="IFrameSink"/>), and frames written to it are received by the host. The engine's local switch port sits
/// on it. What only some devices can do is in the optional interfaces <see cref="IPolledEthernetDevice"/> (served from
/// the caller's event loop) and <see cref="ICoalescingEthernetDevice"/> (a burst's writes merged).
/// </summary>
public interface IEthernetDevice : IAsyncDisposable
{
    /// <summary>The interface name the host sees.</summary>
    string Name { get; }

    /// <summary>The device's MAC address.</summary>
    PhysicalAddress MacAddress { get; }

    /// <summary>The device MTU (largest IP packet; frames may be 14 bytes longer, 18 with a VLAN tag).</summary>
    int Mtu { get; }

    /// <summary>Frame counts and drops.</summary>
    EthernetDeviceCounters Counters { get; }

    /// <summary>
    /// Why the device stopped delivering frames (for example, the interface was deleted under it); null while it
    /// works. Its receive loop, if it has one, has ended; writes are dropped and counted.
    /// </summary>
    string? Fault { get; }

    /// <summary>
    /// Starts delivering frames sent by the host to <paramref name="sink"/>, from the device's own receive loop (or, for a
    /// device with no kernel behind it, on the thread that plays the host). The span is valid only during the call. Call
    /// once.
    /// </summary>
    void Start(IFrameSink sink);

    /// <summary>Hands one frame to the host now. Never blocks; returns false (and counts) when it could not.</summary>
    bool TryWrite(ReadOnlySpan<byte> frame);
}

/// <summary>
/// A device that can be served from the caller's event loop instead of receive threads of its own: each queue has a
/// descriptor that polls readable when the host has frames, and <see cref="PollReady"/> reads them on the calling
/// thread.
/// </summary>
public interface IPolledEthernetDevice : IEthernetDevice
{
    /// <summary>One Linux descriptor per queue, readable whenever <see cref="PollReady"/> has frames of that queue to deliver.</summary>
    IReadOnlyList<int> ReadinessDescriptors { get; }

    /// <summary>
    /// Like <see cref="IEthernetDevice.Start"/>, but without receive loops of the device's own: frames reach
    /// <paramref name="sink"/> only from <see cref="PollReady"/>. Call once, instead of <see cref="IEthernetDevice.Start"/>.
    /// </summary>
    void StartPolled(IFrameSink sink);

    /// <summary>
    /// Delivers, on the calling thread and without blocking, the frames the host has ready on <paramref name="queue"/>,
    /// with <paramref name="batch"/> (its buffers are used for reading; the sink gets it with each frame); returns how
    /// many. Call it when the queue's descriptor is readable, and after writing to the device: the host often answers a
    /// written frame at once (an echo reply, a TCP segment an ACK released), so the thread that wrote can carry the answer
    /// on without another wake-up. 0 when another thread is reading the queue; -1 once the device has failed
    /// (<see cref="IEthernetDevice.Fault"/>) and will deliver nothing more, so a caller's event loop can stop watching it.
    /// </summary>
    int PollReady(int queue, DeviceBatch batch);
}

/// <summary>A device that can merge the frames of a burst (consecutive TCP segments of one stream) into one write.</summary>
public interface ICoalescingEthernetDevice : IEthernetDevice
{
    /// <summary>
    /// Like <see cref="IEthernetDevice.TryWrite"/>, but the device may hold the frame (copied) in <paramref name="batch"/>
    /// to merge it with the ones that follow in the same batch, until <see cref="FlushWrites"/>; frames stay in order.
    /// </summary>
    bool TryWrite(ReadOnlySpan<byte> frame, DeviceBatch batch);

    /// <summary>Writes what <paramref name="batch"/> holds for this device.</summary>
    void FlushWrites(DeviceBatch batch);
}

/// <summary>Receives frames from an <see cref="IEthernetDevice"/>.</summary>
public interface IFrameSink
{
    /// <summary>
    /// One frame; valid only during the call. <paramref name="batch"/> is the batch of the burst the frame came in (from
    /// <see cref="IPolledEthernetDevice.PollReady"/> or a device's own receive loop), null for a frame that came alone.
    /// Must not block and must not throw.
    /// </summary>
    void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch);
}

/// <summary>
/// A sink that wants to know where a burst of frames ends (frames the device read in one go), for example to send what
/// the frames produced with one system call. Devices that read in bursts call it after each.
/// </summary>
public interface IFrameBurstSink : IFrameSink
{
    /// <summary>No more frames of this burst: what they produced must be on its way when this returns.</summary>
    void OnBurstEnd(DeviceBatch batch);
}

/// <summary>
/// A sink that lends a batch to a device whose frames come from its own threads rather than a read loop (a userspace
/// stack sending what a write or an acknowledgment released): the device hands a run of frames over with the batch and
/// ends the run with <see cref="IFrameBurstSink.OnBurstEnd"/>, so the run leaves in one system call per socket instead
/// of one per frame.
/// </summary>
public interface IBatchingFrameSink : IFrameBurstSink
{
    /// <summary>
    /// A batch of the device's own, used by one thread at a time (the device serializes its runs); when it is
    /// <see cref="IDisposable"/>, the device disposes of it when it stops.
    /// </summary>
    DeviceBatch CreateBatch();
}

/// <summary>Counters of a device, safe to read from any thread.</summary>
public sealed class EthernetDeviceCounters
{
    internal long FramesReadValue;
    internal long BytesReadValue;
    internal long FramesWrittenValue;
    internal long BytesWrittenValue;
    internal long WriteDropsValue;
    internal long ReadErrorsValue;
    internal long SinkErrorsValue;
    internal long SegmentedReadsValue;
    internal long CoalescedWritesValue;

    /// <summary>Frames the host sent (read from the device).</summary>
    public long FramesRead => Volatile.Read(ref FramesReadValue);

    /// <summary>Bytes the host sent.</summary>
    public long BytesRead => Volatile.Read(ref BytesReadValue);

    /// <summary>Frames handed to the host.</summary>
    public long FramesWritten => Volatile.Read(ref FramesWrittenValue);

    /// <summary>Bytes handed to the host.</summary>
    public long BytesWritten => Volatile.Read(ref BytesWrittenValue);

    /// <summary>Frames that could not be handed to the host (queue full, too large, device down).</summary>
    public long WriteDrops => Volatile.Read(ref WriteDropsValue);

    /// <summary>Failed reads from the device.</summary>
    public long ReadErrors => Volatile.Read(ref ReadErrorsValue);

    /// <summary>Exceptions thrown by the sink (caught so the receive loop survives).</summary>
    public long SinkErrors => Volatile.Read(ref SinkErrorsValue);

    /// <summary>Packets the host handed over for segmentation (TSO), each cut into several frames.</summary>
    public long SegmentedReads => Volatile.Read(ref SegmentedReadsValue);

    /// <summary>Frames handed to the host merged with others into one packet (the receive side of offload).</summary>
    public long CoalescedWrites => Volatile.Read(ref CoalescedWritesValue);
}
