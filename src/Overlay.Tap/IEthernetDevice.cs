using System.Net.NetworkInformation;

namespace Overlay.Tap;

/// <summary>
/// A virtual Ethernet NIC: frames the host's network stack sends come out of it (delivered to an
/// <see cref="IFrameSink"/> from one long-lived receive loop), and frames written to it are received
/// by the host. The engine's local switch port sits on it.
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
    /// Starts delivering frames sent by the host to <paramref name="sink"/>. Frames are delivered one at
    /// a time on the device's receive loop; the span is valid only during the call. Call once.
    /// </summary>
    void Start(IFrameSink sink);

    /// <summary>
    /// A Linux descriptor that polls readable whenever <see cref="PollReady"/> has frames to deliver, for a caller that
    /// serves the device from its own event loop (<see cref="StartPolled"/>); -1 when the device has none.
    /// </summary>
    int ReadinessDescriptor => -1;

    /// <summary>
    /// Like <see cref="Start"/>, but without a receive loop of the device's own: frames reach <paramref name="sink"/>
    /// only from <see cref="PollReady"/>, which the caller invokes when <see cref="ReadinessDescriptor"/> is readable.
    /// Throws <see cref="NotSupportedException"/> when <see cref="ReadinessDescriptor"/> is -1. Call once, instead of
    /// <see cref="Start"/>.
    /// </summary>
    void StartPolled(IFrameSink sink) => throw new NotSupportedException($"{Name} cannot be served by an external event loop");

    /// <summary>Hands one frame to the host. Never blocks; returns false (and counts) when it could not.</summary>
    bool TryWrite(ReadOnlySpan<byte> frame);

    /// <summary>
    /// Delivers, on the calling thread and without blocking, the frames the host has ready, as the receive loop would
    /// (in order with it: one reader at a time); returns how many. The host often answers a written frame at once
    /// (an echo reply, a TCP segment an ACK released), so the thread that wrote can carry the answer on without waking
    /// the receive loop. 0 when another thread is reading or the device has no such path; -1 once the device has
    /// failed (<see cref="Fault"/>) and will deliver nothing more, so a caller's event loop can stop watching it.
    /// </summary>
    int PollReady() => 0;

    /// <summary>
    /// Why the device stopped delivering frames (for example, the interface was deleted under it); null while it
    /// works. Its receive loop, if it has one, has ended; writes are dropped and counted.
    /// </summary>
    string? Fault => null;

    /// <summary>
    /// Like <see cref="TryWrite"/>, but the device may hold the frame (copied) to merge it with the ones that follow on
    /// this thread into one write, until <see cref="FlushWrites"/> on this thread; frames stay in order.
    /// </summary>
    bool TryWriteDeferred(ReadOnlySpan<byte> frame) => TryWrite(frame);

    /// <summary>Writes what <see cref="TryWriteDeferred"/> holds for the calling thread.</summary>
    void FlushWrites()
    {
    }
}

/// <summary>Receives frames from an <see cref="IEthernetDevice"/>.</summary>
public interface IFrameSink
{
    /// <summary>One frame; valid only during the call. Must not block and must not throw.</summary>
    void OnFrame(ReadOnlySpan<byte> frame);
}

/// <summary>
/// A sink that wants to know where a burst of frames begins and ends (frames the device read in one wake-up), for
/// example to send what the frames produce with one system call. Devices that read in bursts call these around them.
/// </summary>
public interface IFrameBurstSink : IFrameSink
{
    /// <summary>Frames follow, on this thread.</summary>
    void OnBurstStart();

    /// <summary>No more frames of this burst: what they produced must be on its way when this returns.</summary>
    void OnBurstEnd();
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
