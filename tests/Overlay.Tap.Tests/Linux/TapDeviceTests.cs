using System.Net;
using System.Net.NetworkInformation;
using System.Runtime.InteropServices;
using System.Text.Json;
using NUnit.Framework;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Tap.Tests.Linux;

/// <summary>Creates real TAP devices, each in a namespace of its own, and checks them with ip(8).</summary>
[TestFixture]
[NonParallelizable]
public sealed partial class TapDeviceTests
{
    private NetNamespace _ns = null!;

    [SetUp]
    public void SetUp()
    {
        Prerequisites.RequireNetworkNamespaces();
        _ns = NetNamespace.Create($"otap{Random.Shared.Next(0x100000):x5}");
    }

    [TearDown]
    public void TearDown() => _ns?.Dispose();

    [Test]
    public async Task Creates_a_device_with_the_asked_mac_mtu_addresses_and_state()
    {
        var mac = PhysicalAddress.Parse("02-00-5E-10-00-01");
        var device = _ns.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "ovt0", MacAddress = mac, Mtu = 1400,
            Addresses = [InterfaceAddress.Parse("10.77.0.1/24"), InterfaceAddress.Parse("fd77::1/64")],
        }));
        await using (device)
        {
            using var link = JsonDocument.Parse(_ns.Exec("ip", "-j link show ovt0"));
            var l = link.RootElement[0];
            Assert.That(l.GetProperty("address").GetString(), Is.EqualTo("02:00:5e:10:00:01"));
            Assert.That(l.GetProperty("mtu").GetInt32(), Is.EqualTo(1400));
            Assert.That(l.GetProperty("flags").EnumerateArray().Select(f => f.GetString()), Does.Contain("UP"));
            Assert.That(device.MacAddress, Is.EqualTo(mac));
            Assert.That(device.Index, Is.EqualTo(l.GetProperty("ifindex").GetInt32()));

            using var addr = JsonDocument.Parse(_ns.Exec("ip", "-j addr show ovt0"));
            var addresses = addr.RootElement[0].GetProperty("addr_info").EnumerateArray()
                .Select(a => $"{a.GetProperty("local").GetString()}/{a.GetProperty("prefixlen").GetInt32()}").ToList();
            Assert.That(addresses, Does.Contain("10.77.0.1/24").And.Contain("fd77::1/64"));
        }
        Assert.That(() => _ns.Exec("ip", "link show ovt0"), Throws.InvalidOperationException, "the device outlived its dispose");
    }

    [Test]
    public async Task A_multi_queue_device_has_its_queues()
    {
        await using var device = _ns.Run(() => TapDevice.Create(new TapDeviceOptions { Name = "ovtq", Queues = 2 }));
        Assert.That(device.ReadinessDescriptors, Has.Count.EqualTo(2), "a descriptor to watch per queue");
        Assert.That(device.ReadinessDescriptors.Distinct().Count(), Is.EqualTo(2));
        Assert.That(() => device.PollReady(2, new DeviceBatch()), Throws.TypeOf<ArgumentOutOfRangeException>(), "there is no third queue");
        device.Start(new NullSink());
        var queues = _ns.Exec("ls", "/sys/class/net/ovtq/queues");
        Assert.That(queues, Does.Contain("rx-1").And.Contain("tx-1"));
    }

    private sealed class FrameList : IFrameSink
    {
        public List<byte[]> Frames { get; } = [];
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => Frames.Add(frame.ToArray());
    }

    [Test]
    public async Task A_polled_device_delivers_only_when_its_caller_polls()
    {
        await using var device = _ns.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "ovtpl", MacAddress = PhysicalAddress.Parse("02-00-5E-10-00-09"), Addresses = [InterfaceAddress.Parse("10.78.0.1/24")],
        }));
        var sink = new FrameList();
        device.StartPolled(sink);
        Assert.That(() => device.StartPolled(sink), Throws.InvalidOperationException, "started once");
        // The kernel asks for 10.78.0.2's MAC on the device: an ARP request to read.
        using var ping = _ns.Start("ping", "-c 1 -W 2 10.78.0.2");
        var batch = new DeviceBatch();
        Assert.That(WaitReadable(device.ReadinessDescriptors[0], TimeSpan.FromSeconds(5)), Is.True, "the descriptor polls readable");
        Assert.That(sink.Frames, Is.Empty, "nothing is read behind the caller's back");
        Assert.That(device.PollReady(0, batch), Is.GreaterThanOrEqualTo(1));
        // The first frames may be the kernel's own IPv6 chatter on a fresh link (MLD reports, router solicitations), read
        // before ping's ARP request is queued: poll again, each time the descriptor says there is more.
        static bool IsArpRequest(byte[] f) => f.Length >= 42 && f[12] == 0x08 && f[13] == 0x06 && f.AsSpan(38, 4).SequenceEqual(new byte[] { 10, 78, 0, 2 });
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!sink.Frames.Any(IsArpRequest) && WaitReadable(device.ReadinessDescriptors[0], deadline - DateTime.UtcNow))
            Assert.That(device.PollReady(0, batch), Is.GreaterThanOrEqualTo(1), "readable means a frame to read");
        Assert.That(sink.Frames.Any(IsArpRequest), Is.True, "the ARP request for 10.78.0.2");
        Assert.That(Threads(), Has.None.StartsWith("tap ovtpl"), "no receive thread of the device's own");
    }

    [Test]
    public async Task An_interface_deleted_under_the_device_is_a_fault_and_reading_stops([Values] bool polled)
    {
        await using var device = _ns.Run(() => TapDevice.Create(new TapDeviceOptions { Name = "ovtdel", Addresses = [InterfaceAddress.Parse("10.79.0.1/24")] }));
        var sink = new FrameList();
        if (polled) device.StartPolled(sink);
        else device.Start(sink);
        Assert.That(device.Fault, Is.Null);
        _ns.Exec("ip", "link del ovtdel");
        if (polled)
        {
            // The error polls (POLLERR) for ever: the caller learns from PollReady that it should stop watching.
            Assert.That(WaitReadable(device.ReadinessDescriptors[0], TimeSpan.FromSeconds(5)), Is.True);
            Assert.That(device.PollReady(0, new DeviceBatch()), Is.EqualTo(-1));
        }
        else
        {
            Assert.That(SpinWait.SpinUntil(() => device.Fault is not null, TimeSpan.FromSeconds(5)), Is.True, "the receive thread noticed");
            Assert.That(SpinWait.SpinUntil(() => !Threads().Any(t => t.StartsWith("tap ovtdel", StringComparison.Ordinal)), TimeSpan.FromSeconds(5)),
                Is.True, "and ended instead of polling the error in a loop");
        }
        Assert.That(device.Fault, Does.Contain("ovtdel can no longer be read").And.Contain("deleted"));
        Assert.That(device.PollReady(0, new DeviceBatch()), Is.EqualTo(-1));
        Assert.That(device.Counters.ReadErrors, Is.EqualTo(1), "counted once, not once per wake-up");
        var frame = new byte[60];
        frame[0] = 0xff;
        Assert.That(device.TryWrite(frame), Is.False, "writes are dropped");
        Assert.That(device.Counters.WriteDrops, Is.EqualTo(1), "and counted");
    }

    private static IEnumerable<string> Threads() =>
        Directory.GetDirectories("/proc/self/task").Select(t => File.ReadAllText(Path.Combine(t, "comm")).Trim());

    private static unsafe bool WaitReadable(int fd, TimeSpan timeout)
    {
        var pollFd = new LibC.PollFd { Fd = fd, Events = LibC.POLLIN };
        return LibC.Poll(&pollFd, 1, Math.Max(0, (int)timeout.TotalMilliseconds)) == 1 && pollFd.Revents != 0; // readable, or an error to read

    }

    private sealed class NullSink : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) { }
    }

    [Test]
    public async Task A_persistent_device_outlives_dispose()
    {
        var device = _ns.Run(() => TapDevice.Create(new TapDeviceOptions { Name = "ovtp", Persist = true }));
        await device.DisposeAsync();
        Assert.That(_ns.Exec("ip", "link show ovtp"), Does.Contain("ovtp"));
    }

    [Test]
    public async Task A_name_in_use_is_refused()
    {
        await using var first = _ns.Run(() => TapDevice.Create(new TapDeviceOptions { Name = "ovt1" }));
        AssertRefused(new TapDeviceOptions { Name = "ovt1" }, TapError.NameInUse);
        AssertRefused(new TapDeviceOptions { Name = "lo" }, TapError.NameInUse);
    }

    [TestCase("a-name-over-15-chars")]
    [TestCase("a/b")]
    [TestCase("a b")]
    [TestCase("")]
    public void A_bad_name_is_refused(string name) => AssertRefused(new TapDeviceOptions { Name = name }, TapError.InvalidName);

    [TestCase(10)]
    [TestCase(70000)]
    public void A_bad_mtu_is_refused(int mtu) => AssertRefused(new TapDeviceOptions { Name = "ovt2", Mtu = mtu }, TapError.InvalidMtu);

    [Test]
    public void A_multicast_mac_is_refused() =>
        AssertRefused(new TapDeviceOptions { Name = "ovt3", MacAddress = PhysicalAddress.Parse("01-00-5E-00-00-01") }, TapError.InvalidAddress);

    [Test]
    public void A_missing_tun_device_node_is_a_clear_error()
    {
        var e = AssertRefused(new TapDeviceOptions { Name = "ovt4", DevicePath = "/nonexistent/net/tun" }, TapError.NoTunDevice);
        Assert.That(e.Message, Does.Contain("/nonexistent/net/tun"));
    }

    [Test]
    public void Without_cap_net_admin_creation_is_refused_as_permission_denied()
    {
        // Capabilities are per thread on Linux: drop CAP_NET_ADMIN from this one thread's effective set.
        TapDeviceException? error = null;
        Exception? unexpected = null;
        var thread = new Thread(() =>
        {
            try
            {
                _ns.Run(() =>
                {
                    using (Capabilities.WithoutNetAdmin())
                        error = Assert.Throws<TapDeviceException>(() => TapDevice.Create(new TapDeviceOptions { Name = "ovt5" }));
                });
            }
            catch (Exception e) { unexpected = e; }
        });
        thread.Start();
        thread.Join();
        Assert.That(unexpected, Is.Null);
        Assert.That(error!.Reason, Is.EqualTo(TapError.PermissionDenied), error.Message);
        Assert.That(error.Message, Does.Contain("CAP_NET_ADMIN"));
    }

    private TapDeviceException AssertRefused(TapDeviceOptions options, TapError reason)
    {
        var e = Assert.Throws<TapDeviceException>(() => _ns.Run(() => TapDevice.Create(options)))!;
        Assert.That(e.Reason, Is.EqualTo(reason), e.Message);
        return e;
    }

    /// <summary>capget/capset on the calling thread only (raw syscalls; glibc would broadcast to all threads).</summary>
    private static unsafe partial class Capabilities
    {
        private const int SysCapget = 125, SysCapset = 126; // x86_64
        private const uint Version3 = 0x20080522;
        private const int CapNetAdmin = 12;

        public static IDisposable WithoutNetAdmin()
        {
            var header = stackalloc uint[2] { Version3, 0 };
            var data = stackalloc uint[6];
            if (syscall(SysCapget, header, data) != 0) throw new InvalidOperationException($"capget: {Marshal.GetLastPInvokeError()}");
            var effective = data[0];
            data[0] = effective & ~(1u << CapNetAdmin);
            if (syscall(SysCapset, header, data) != 0) throw new InvalidOperationException($"capset: {Marshal.GetLastPInvokeError()}");
            return new Restore(effective);
        }

        private sealed class Restore(uint effective) : IDisposable
        {
            public void Dispose()
            {
                var header = stackalloc uint[2] { Version3, 0 };
                var data = stackalloc uint[6];
                syscall(SysCapget, header, data);
                data[0] = effective;
                syscall(SysCapset, header, data);
            }
        }

        [LibraryImport("libc", SetLastError = true)]
        private static partial int syscall(int number, uint* header, uint* data);
    }
}
