using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Tap.InMemory;

namespace Overlay.Tap.Tests.InMemory;

public class InMemoryEthernetDeviceTests
{
    private sealed class Recorder : IFrameSink
    {
        public List<byte[]> Frames { get; } = [];
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => Frames.Add(frame.ToArray());
    }

    [Test]
    public async Task Frames_flow_both_ways_and_bad_sizes_are_dropped_and_counted()
    {
        await using var device = new InMemoryEthernetDevice("mem0", PhysicalAddress.Parse("02-00-00-00-00-01"), mtu: 1410);
        var fromHost = new Recorder();
        var toHost = new Recorder();
        device.Start(fromHost);
        device.HostReceiver = toHost;

        var frame = new byte[60];
        frame[0] = 0xff;
        Assert.That(device.SendFromHost(frame), Is.True);
        Assert.That(device.TryWrite(frame), Is.True);
        Assert.That(device.TryWrite(new byte[13]), Is.False, "runt");
        Assert.That(device.TryWrite(new byte[1410 + 19]), Is.False, "over MTU");
        Assert.That(device.SendFromHost(new byte[5]), Is.False, "runt from host");

        Assert.That(fromHost.Frames.Single(), Is.EqualTo(frame));
        Assert.That(toHost.Frames.Single(), Is.EqualTo(frame));
        Assert.That((device.Counters.FramesRead, device.Counters.FramesWritten, device.Counters.WriteDrops, device.Counters.ReadErrors), Is.EqualTo((1L, 1L, 2L, 1L)));
    }

    [Test]
    public void A_device_starts_once()
    {
        var device = new InMemoryEthernetDevice("mem1", PhysicalAddress.Parse("02-00-00-00-00-02"));
        device.Start(new Recorder());
        Assert.Throws<InvalidOperationException>(() => device.Start(new Recorder()));
    }
}
