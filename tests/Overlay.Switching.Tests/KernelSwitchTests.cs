using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Switching.Flood;
using Overlay.Tap;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Switching.Tests;

/// <summary>
/// Three network namespaces, each with a real TAP owned by a switch in this process; the switches are
/// joined in a triangle by in-memory links. The kernel's own ping, ARP, IPv6 neighbour discovery and
/// IGMP cross them, and multicast goes only where a socket joined the group.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelSwitchTests
{
    private readonly List<NetNamespace> _namespaces = [];
    private readonly List<TapDevice> _taps = [];
    private readonly List<OverlaySwitch> _switches = [];
    private readonly List<CountingTapPort> _ports = [];
    private readonly List<SwitchInput> _inputs = [];

    [OneTimeSetUp]
    public void SetUp()
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("ping", "iputils-ping");
        var tag = Random.Shared.Next(0x100000).ToString("x5", System.Globalization.CultureInfo.InvariantCulture);
        for (var i = 0; i < 3; i++)
        {
            var ns = NetNamespace.Create($"o{tag}-k{i}");
            _namespaces.Add(ns);
            var n = i + 1;
            var tap = ns.Run(() => TapDevice.Create(new TapDeviceOptions
            {
                Name = "ovs0",
                MacAddress = PhysicalAddress.Parse($"02-88-00-00-00-0{n}"),
                Addresses = [InterfaceAddress.Parse($"10.88.0.{n}/24"), InterfaceAddress.Parse($"fd88::{n}/64")],
            }));
            _taps.Add(tap);
            ns.Exec("ip", "route add 224.0.0.0/4 dev ovs0");
            var port = new CountingTapPort(tap);
            _ports.Add(port);
            _switches.Add(new OverlaySwitch(new NodeId((UInt128)n << 100), port));
        }
        for (var i = 0; i < 3; i++)
            for (var j = 0; j < 3; j++)
                if (i != j) _switches[i].AddLink(_switches[j].Self, new MemoryLink(_switches[i].Self, _switches[j]));
        for (var i = 0; i < 3; i++)
        {
            _inputs.Add(new SwitchInput(_switches[i]));
            _taps[i].Start(_inputs[i]);
        }
    }

    [OneTimeTearDown]
    public async Task TearDown()
    {
        foreach (var tap in _taps) await tap.DisposeAsync();
        foreach (var ns in _namespaces) ns.Dispose();
    }

    [TestCase(0, "10.88.0.2", "")]
    [TestCase(1, "10.88.0.3", "")]
    [TestCase(2, "10.88.0.1", "")]
    [TestCase(0, "fd88::3", "-6")]
    [TestCase(2, "fd88::2", "-6")]
    public void Kernel_ping_crosses_the_switches(int from, string to, string family)
    {
        var output = _namespaces[from].Exec("ping", $"{family} -c 3 -i 0.2 -W 2 {to}", TimeSpan.FromSeconds(20));
        Assert.That(output, Does.Contain("3 received"), output);
        Assert.That(_switches.Sum(s => s.Counters.Dropped), Is.Zero,
            string.Join("; ", _switches.Select(s => $"{s.Self}: loops {s.Counters.Loops} dup {s.Counters.Duplicates} sendfail {s.Counters.SendFailed} arc {s.Counters.OutsideArc} unknown {s.Counters.UnknownPort} runt {s.Counters.Runts} big {s.Counters.Oversize}")));
    }

    [Test]
    public async Task Multicast_reaches_a_joined_receiver_and_not_an_unjoined_host()
    {
        var group = IPAddress.Parse("239.7.7.7");
        const int port = 5007;
        using var receiver = _namespaces[1].Run(() =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            s.Bind(new IPEndPoint(IPAddress.Any, port));
            // Joining makes the kernel send an IGMP report through the TAP: the switches learn the subscriber from it.
            s.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.AddMembership, new MulticastOption(group, IPAddress.Parse("10.88.0.2")));
            return s;
        });
        using var sender = _namespaces[0].Run(() =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface, IPAddress.Parse("10.88.0.1").GetAddressBytes());
            return s;
        });
        var target = new IPEndPoint(group, port);
        var buffer = new byte[64];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var groupMac = 0x0100_5E07_0707UL;
        await _inputs[1].JoinSeen(groupMac).WaitAsync(timeout.Token); // the kernel's IGMP report crossed the TAP and the switches
        _ports[2].Reset(groupMac);
        _ports[1].Reset(groupMac);

        for (byte i = 1; i <= 5; i++) await sender.SendToAsync(new[] { i }, target, timeout.Token);
        var got = new List<byte>();
        while (got.Count < 5)
        {
            var n = await receiver.ReceiveAsync(buffer, timeout.Token);
            if (n == 1) got.Add(buffer[0]);
        }
        Assert.That(got, Is.EqualTo(new byte[] { 1, 2, 3, 4, 5 }));
        Assert.That(_ports[1].FramesTo(groupMac), Is.EqualTo(5), "the joined host's switch delivered each datagram once");
        Assert.That(_ports[2].FramesTo(groupMac), Is.Zero, "the switch of the host that did not join delivered nothing");
    }

    private sealed class SwitchInput(OverlaySwitch sw) : IFrameSink
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, TaskCompletionSource> _joins = new();

        /// <summary>Completes when the host has sent a join for <paramref name="groupMac"/> and the switch has taken it in.</summary>
        public Task JoinSeen(ulong groupMac) => _joins.GetOrAdd(groupMac, _ => new(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            sw.OnLocalFrame(frame);
            Span<Frames.GroupChange> changes = stackalloc Frames.GroupChange[4];
            var n = Frames.MulticastReport.Read(frame, changes);
            for (var i = 0; i < n; i++)
                if (changes[i].Join) _joins.GetOrAdd(changes[i].GroupMac, _ => new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        }
    }

    /// <summary>The switch's local port: writes to the TAP and counts frames per destination MAC.</summary>
    private sealed class CountingTapPort(TapDevice tap) : ISwitchPort
    {
        private ulong _watched;
        private int _count;

        public void Reset(ulong mac)
        {
            _watched = mac;
            Interlocked.Exchange(ref _count, 0);
        }

        public int FramesTo(ulong mac) => mac == _watched ? Volatile.Read(ref _count) : -1;

        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            if (Frames.EthernetFrame.Destination(frame) == _watched) Interlocked.Increment(ref _count);
            return tap.TryWrite(frame);
        }

        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) => false;
    }

    /// <summary>A link to another switch in this process: frames are handed over synchronously.</summary>
    private sealed class MemoryLink(NodeId self, OverlaySwitch peer) : ISwitchPort
    {
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            peer.OnLinkFrame(self, frame);
            return true;
        }

        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            peer.OnLinkFlood(self, header, frame);
            return true;
        }
    }
}
