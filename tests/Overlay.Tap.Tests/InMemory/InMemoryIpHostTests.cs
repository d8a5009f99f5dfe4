using System.Net;
using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Tap.InMemory;

namespace Overlay.Tap.Tests.InMemory;

public class InMemoryIpHostTests
{
    private sealed class Cable(InMemoryEthernetDevice other) : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => other.TryWrite(frame);
    }

    /// <summary>Loses the first frame it carries, as a network in the middle of a change might.</summary>
    private sealed class LossyCable(InMemoryEthernetDevice other) : IFrameSink
    {
        public int Carried;

        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            if (Interlocked.Increment(ref Carried) > 1) other.TryWrite(frame);
        }
    }

    [Test]
    public async Task A_lost_arp_request_is_sent_again_as_the_kernel_would()
    {
        await using var a = new InMemoryEthernetDevice("a", PhysicalAddress.Parse("02-00-00-00-00-0A"));
        await using var b = new InMemoryEthernetDevice("b", PhysicalAddress.Parse("02-00-00-00-00-0B"));
        var cable = new LossyCable(b);
        a.Start(cable);
        b.Start(new Cable(a));
        await using var hostA = new InMemoryIpHost(a, IPAddress.Parse("10.0.0.1"));
        await using var hostB = new InMemoryIpHost(b, IPAddress.Parse("10.0.0.2"));

        Assert.That(await hostA.ResolveAsync(IPAddress.Parse("10.0.0.2"), TimeSpan.FromSeconds(5)), Is.EqualTo(b.MacAddress));
        Assert.That(cable.Carried, Is.GreaterThanOrEqualTo(2), "the first request was lost, a later one answered");
        var before = cable.Carried;
        Assert.That(async () => await hostA.ResolveAsync(IPAddress.Parse("10.0.0.9"), TimeSpan.FromMilliseconds(1500)), Throws.InstanceOf<TimeoutException>());
        Assert.That(cable.Carried - before, Is.InRange(1, 2), "a request nobody answers goes at 0 and 1 s (once if the machine stalls), then gives up at 1.5 s");
    }

    [Test]
    public async Task Two_hosts_on_a_cable_resolve_ping_and_count_probes()
    {
        await using var a = new InMemoryEthernetDevice("a", PhysicalAddress.Parse("02-00-00-00-00-0A"));
        await using var b = new InMemoryEthernetDevice("b", PhysicalAddress.Parse("02-00-00-00-00-0B"));
        a.Start(new Cable(b));
        b.Start(new Cable(a));
        await using var hostA = new InMemoryIpHost(a, IPAddress.Parse("10.0.0.1"));
        await using var hostB = new InMemoryIpHost(b, IPAddress.Parse("10.0.0.2"));

        Assert.That(await hostA.ResolveAsync(IPAddress.Parse("10.0.0.2"), TimeSpan.FromSeconds(5)), Is.EqualTo(b.MacAddress));
        var rtt = await hostB.PingAsync(IPAddress.Parse("10.0.0.1"), TimeSpan.FromSeconds(5));
        Assert.That(rtt, Is.GreaterThan(TimeSpan.Zero));
        Assert.That(async () => await hostA.PingAsync(IPAddress.Parse("10.0.0.9"), TimeSpan.FromMilliseconds(200)), Throws.InstanceOf<TimeoutException>());

        await hostA.BroadcastProbeAsync(7);
        await hostA.PingAsync(IPAddress.Parse("10.0.0.2"), TimeSpan.FromSeconds(5)); // frames are sent in order: the probe is in
        Assert.That(hostB.ProbesReceived.Values.Single(), Is.EqualTo(1));
    }
}
