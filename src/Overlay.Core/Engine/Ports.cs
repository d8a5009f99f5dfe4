using Overlay.Links;
using Overlay.Switching;
using Overlay.Switching.Flood;
using Overlay.Tap;

namespace Overlay.Engine;

/// <summary>
/// The switch's local port: the overlay's virtual NIC. A thread that writes frames in a burst (a link's receive loop)
/// lets the device merge them (TCP segments of one stream become one write) and, when the burst ends, reads what the
/// host answered straight away, so a reply leaves without another thread's wake-up.
/// </summary>
internal sealed class DevicePort(IEthernetDevice device) : ISwitchPort, Transport.IBurstCompletion
{
    public bool TrySendFrame(ReadOnlySpan<byte> frame) =>
        Transport.SendBatch.Defer(this) ? device.TryWriteDeferred(frame) : device.TryWrite(frame);

    public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame) => false;

    /// <summary>End of the burst: merged frames go to the host, and what the host answered comes back on this thread.</summary>
    public void OnBurstComplete()
    {
        device.FlushWrites();
        device.PollReady();
    }
}

/// <summary>Frames the NIC hands over go into the switch; what a burst of them sends on links leaves in one system call per socket.</summary>
internal sealed class DeviceInput(OverlaySwitch sw) : IFrameBurstSink
{
    public void OnFrame(ReadOnlySpan<byte> frame) => sw.OnLocalFrame(frame);

    public void OnBurstStart() => Transport.SendBatch.Enter();

    public void OnBurstEnd()
    {
        Transport.SendBatch.Exit();
        Transport.SendBatch.Flush(); // nested in another burst (PollReady on a link's thread): send now, in order
    }
}

/// <summary>
/// The node's event loop found the NIC readable: read what the host sent, on the loop's thread. A device that failed
/// (its interface deleted) would poll readable for ever; the loop stops watching it.
/// </summary>
internal sealed class DeviceReadiness(IEthernetDevice device, Transport.EventLoop loop) : Transport.IReadableSource
{
    public long Registration { get; set; } = -1;

    public void OnReadable()
    {
        if (device.PollReady() < 0) loop.Unregister(Registration);
    }
}

/// <summary>A switch port that is one TinCan link: plain frames as they are, flood frames behind their header.</summary>
internal sealed class LinkPort(TinCanLink link) : ISwitchPort
{
    [ThreadStatic] private static byte[]? t_flood;

    public TinCanLink Link => link;

    public bool TrySendFrame(ReadOnlySpan<byte> frame) => link.TrySend(frame);

    public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame)
    {
        if (frame.Length > ushort.MaxValue) return false;
        var buffer = t_flood ??= GC.AllocateUninitializedArray<byte>(FloodHeader.Length + ushort.MaxValue, pinned: true);
        header.Write(buffer);
        frame.CopyTo(buffer.AsSpan(FloodHeader.Length));
        return link.TrySend(buffer.AsSpan(0, FloodHeader.Length + frame.Length), PacketKind.FloodFrame);
    }
}
