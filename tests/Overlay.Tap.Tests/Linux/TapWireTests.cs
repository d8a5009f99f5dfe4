using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Tap.Tests.Linux;

/// <summary>
/// Two namespaces, a TAP in each, and this process copying frames between them like a cable: the
/// kernel's own ping and ping -6 (so ARP and IPv6 neighbour discovery) work through the devices, and
/// so does TCP with the devices' offload on both ends (64 KiB segments read and cut, runs merged on write).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class TapWireTests
{
    private NetNamespace _a = null!, _b = null!;
    private TapDevice _tapA = null!, _tapB = null!;
    private Cable _toB = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("ping", "iputils-ping");
        Prerequisites.RequireCommand("iperf3", "iperf3");
        Prerequisites.RequireCommand("nstat", "iproute2");
        var tag = Random.Shared.Next(0x100000).ToString("x5", System.Globalization.CultureInfo.InvariantCulture);
        _a = NetNamespace.Create($"owa{tag}");
        _b = NetNamespace.Create($"owb{tag}");
        _tapA = _a.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "wire0", MacAddress = PhysicalAddress.Parse("02-77-00-00-00-01"),
            Addresses = [InterfaceAddress.Parse("10.77.0.1/24"), InterfaceAddress.Parse("fd77::1/64")],
        }));
        _tapB = _b.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "wire0", MacAddress = PhysicalAddress.Parse("02-77-00-00-00-02"),
            Addresses = [InterfaceAddress.Parse("10.77.0.2/24"), InterfaceAddress.Parse("fd77::2/64")],
        }));
        _tapA.Start(_toB = new Cable(_tapB));
        _tapB.Start(new Cable(_tapA));
    }

    [OneTimeTearDown]
    public async Task TearDown()
    {
        if (_tapA is not null) await _tapA.DisposeAsync();
        if (_tapB is not null) await _tapB.DisposeAsync();
        _a?.Dispose();
        _b?.Dispose();
    }

    [TestCase("a", "10.77.0.2", "")]
    [TestCase("b", "10.77.0.1", "")]
    [TestCase("a", "fd77::2", "-6")]
    [TestCase("b", "fd77::1", "-6")]
    public void Kernel_ping_crosses_the_taps(string from, string to, string family)
    {
        var ns = from == "a" ? _a : _b;
        var output = ns.Exec("ping", $"{family} -c 3 -i 0.2 -W 2 {to}", TimeSpan.FromSeconds(20));
        Assert.That(output, Does.Contain("3 received"), output);
        Assert.That(_tapA.Counters.FramesRead, Is.GreaterThan(0));
        Assert.That(_tapB.Counters.FramesWritten, Is.GreaterThan(0));
    }

    [Test]
    public void The_thread_that_wrote_a_request_reads_the_hosts_answer_itself()
    {
        var before = Interlocked.Read(ref _toB.Polled);
        var output = _a.Exec("ping", "-c 20 -i 0.05 -W 2 10.77.0.2", TimeSpan.FromSeconds(20));
        Assert.That(output, Does.Contain("20 received"), output);
        // B's kernel answers each echo request inside the write that delivered it; A's receive thread, which wrote it,
        // then finds the reply at B without B's receive loop waking up for it.
        Assert.That(Interlocked.Read(ref _toB.Polled) - before, Is.GreaterThan(0));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void Kernel_tcp_crosses_the_taps_in_offloaded_runs(bool merge)
    {
        // Unmerged, every segment cut from a TSO read reaches B's kernel as it is, and is checked there.
        _toB.Merge = merge;
        try
        {
            var segmentedBefore = _tapA.Counters.SegmentedReads;
            var coalescedBefore = _tapB.Counters.CoalescedWrites;
            _b.Exec("nstat", "-n"); // reset the namespace's counters history
            using var server = _b.Start("iperf3", "-s -1 -B 10.77.0.2");
            string output = "";
            for (var attempt = 0; attempt < 50; attempt++)
            {
                output = _a.Exec("sh", "-c \"iperf3 -c 10.77.0.2 -n 200M -J || true\"", TimeSpan.FromSeconds(60));
                if (!output.Contains("Connection refused", StringComparison.Ordinal)) break;
                Thread.Sleep(100); // the server is not listening yet: nothing to await from another process but its port
            }
            using var result = System.Text.Json.JsonDocument.Parse(output);
            var end = result.RootElement.GetProperty("end");
            var sent = end.GetProperty("sum_sent").GetProperty("bytes").GetInt64();
            var received = end.GetProperty("sum_received").GetProperty("bytes").GetInt64();
            Assert.That(sent, Is.GreaterThanOrEqualTo(200L << 20), "the whole transfer was sent");
            // The server reports what it had read when the client ended; the last window may still be in flight.
            Assert.That(received, Is.GreaterThan(sent * 95 / 100), "and arrived");
            Assert.That(_tapA.Counters.SegmentedReads, Is.GreaterThan(segmentedBefore), "the sender's kernel handed over TSO segments");
            if (merge) Assert.That(_tapB.Counters.CoalescedWrites, Is.GreaterThan(coalescedBefore), "the receiver's kernel took merged runs");
            else Assert.That(_tapB.Counters.CoalescedWrites, Is.EqualTo(coalescedBefore), "nothing merged");
            var counters = _b.Exec("nstat", "-az TcpInCsumErrors TcpExtTCPCsumErrors");
            Assert.That(counters.Split('\n').Where(l => l.StartsWith("Tcp", StringComparison.Ordinal))
                .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture)), Is.All.Zero,
                "no segment with a bad checksum reached the receiver: " + counters);
        }
        finally
        {
            _toB.Merge = true;
        }
    }

    /// <summary>Copies frames to the other device; a burst's frames may be merged there, and go when the burst ends.</summary>
    private sealed class Cable(TapDevice other) : IFrameBurstSink
    {
        public volatile bool Merge = true;

        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            if (Merge && batch is not null) other.TryWrite(frame, batch);
            else other.TryWrite(frame);
        }

        public long Polled;

        public void OnBurstEnd(DeviceBatch batch)
        {
            other.FlushWrites(batch);
            Interlocked.Add(ref Polled, other.PollReady(0, batch));
        }
    }
}
