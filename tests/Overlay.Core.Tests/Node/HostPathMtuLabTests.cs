using System.Diagnostics;
using System.Text.Json;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using static Overlay.Core.Tests.Node.HostNatLabTests;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Two <c>Overlay.Host</c>s whose path takes 1280-byte packets and drops every fragment, with the overlay's default MTU
/// (1410): one host's own interface has MTU 1280, the other's path shrinks at the bridge, where larger packets vanish
/// without ICMP. The links find 1280 by probing, no data datagram is larger, the hosts learn the overlay path's size from
/// the switch's ICMP answers and clamped SYNs, and ping and TCP work.
/// </summary>
[NonParallelizable]
public class HostPathMtuLabTests
{
    // An outer packet of 1280: 28 bytes of IPv4 and UDP, 26 of the link's sealing, 14 of Ethernet: IP packets of 1212.
    private const int InnerMtu = 1280 - 28 - 26 - 14;
    private const int PathMtuGranularity = 4;

    [Test]
    public async Task Over_a_1280_path_that_drops_fragments_ping_answers_or_gets_icmp_and_tcp_runs()
    {
        Prerequisites.RequireLab("ping", "iperf3");
        await using var lab = await NatLab.StartAsync([NatKind.Public, NatKind.Public], xmpp: true);
        lab.SetPathMtu(0, 1280);
        lab.SetPathMtu(1, 1280, silently: true);
        foreach (var host in lab.Hosts)
        {
            // Fragments of the underlay's UDP are dropped on the way in, as many networks do (the overlay carries inner ones).
            // (No length rule on the way out: netfilter sees UDP GSO runs before the kernel cuts them into datagrams.)
            host.Namespace.Exec("iptables", "-A INPUT -p udp -f -j DROP");
        }
        var work = Directory.CreateTempSubdirectory("overlay-pmtu-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName));
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(60), "the link");
            // Host 1's own interface takes 1280; from host 2 the bridge's veth lets up to 1284 in (see NatLab.SetPathMtu).
            await WaitAsync(hosts, () => PathMtus(hosts[0]) is [1280] && PathMtus(hosts[1]) is [> 1280 - PathMtuGranularity and <= 1284],
                TimeSpan.FromSeconds(30), "both ends to end their path MTU search");
            TestContext.Out.WriteLine($"path MTUs found: {PathMtus(hosts[0])[0]} and {PathMtus(hosts[1])[0]}");

            var (a, b) = (lab.Hosts[0].Namespace, lab.Hosts[1].Namespace);
            var target = hosts[1].Address;
            // The overlay's MTU (1410) with DF: the switch answers "fragmentation needed" with the size that fits.
            var tooBig = a.Exec("sh", $"-c \"ping -M do -s {1410 - 28} -c 2 -W 2 {target} 2>&1 || true\"", TimeSpan.FromSeconds(20));
            TestContext.Out.WriteLine(tooBig);
            Assert.That(tooBig, Does.Match($"mtu ?= ?{InnerMtu}"), "ICMP fragmentation needed with the overlay path's MTU");
            // Up to what fits, with DF: answered.
            Assert.That(() => a.Exec("ping", $"-M do -s {InnerMtu - 28} -c 3 -w 10 {target}", TimeSpan.FromSeconds(15)), Throws.Nothing);
            // The overlay's MTU without DF: the host fragments by the MTU it learned, and the fragments cross the overlay;
            // the echo replies (Linux sends them without DF) are fragmented by the peer's switch, as a router would.
            Assert.That(() => a.Exec("ping", $"-M dont -s {1410 - 28} -c 3 -w 10 {target}", TimeSpan.FromSeconds(15)), Throws.Nothing);
            // The other way, over the path that takes a few bytes more from host 2.
            var back = b.Exec("sh", $"-c \"ping -M do -s {1410 - 28} -c 2 -W 2 {hosts[0].Address} 2>&1 || true\"", TimeSpan.FromSeconds(20));
            var backMtu = PathMtus(hosts[1])[0] - 28 - 26 - 14;
            Assert.That(back, Does.Match($"mtu ?= ?{backMtu}"), "from host 2: ICMP with its link's size");
            Assert.That(() => b.Exec("ping", $"-M dont -s {1410 - 28} -c 3 -w 10 {hosts[0].Address}", TimeSpan.FromSeconds(15)), Throws.Nothing);

            // TCP: the SYNs are clamped, so segments fit without any ICMP.
            using var server = b.Start("iperf3", $"-s -1 -B {target}");
            await Task.Delay(500); // iperf3 has no readiness signal; the client retries below if it came too early
            string result = "";
            for (var attempt = 0; attempt < 5 && !result.Contains("\"bits_per_second\"", StringComparison.Ordinal); attempt++)
            {
                result = a.Exec("sh", $"-c \"iperf3 -c {target} -t 4 -J || true\"", TimeSpan.FromSeconds(60));
                if (!result.Contains("\"bits_per_second\"", StringComparison.Ordinal)) await Task.Delay(500);
            }
            using var json = JsonDocument.Parse(result);
            var end = json.RootElement.GetProperty("end");
            var received = end.GetProperty("sum_received");
            var mbps = received.GetProperty("bits_per_second").GetDouble() / 1e6;
            TestContext.Out.WriteLine($"iperf3 over the 1280 path: {mbps:0} Mbit/s, {received.GetProperty("bytes").GetInt64()} bytes");
            Assert.That(received.GetProperty("bytes").GetInt64(), Is.GreaterThan(1_000_000), "TCP carried data");

            foreach (var (host, ns) in hosts.Zip(lab.Hosts))
            {
                var counters = ns.Namespace.Exec("iptables", "-L -v -x -n");
                TestContext.Out.WriteLine(counters);
                Assert.That(DroppedPackets(counters, "INPUT"), Is.Zero, "no outer fragment ever arrived: every datagram left whole (DF) and fitted");
            }
            foreach (var host in hosts)
            {
                using var links = host.Status()!;
                var statistics = links.RootElement.GetProperty("Overlays")[0].GetProperty("Links")[0].GetProperty("Statistics");
                TestContext.Out.WriteLine(statistics.ToString());
                // A frame too large for the path is refused before sealing (and answered by ICMP); none was sent and lost.
                Assert.That(statistics.GetProperty("SendFailures").GetInt64(), Is.Zero);
            }
            using var status = hosts[0].Status()!;
            var sw = status.RootElement.GetProperty("Overlays")[0].GetProperty("Switch");
            TestContext.Out.WriteLine(sw.ToString());
            Assert.That(sw.GetProperty("MssClamped").GetInt64(), Is.GreaterThan(0), "iperf3's SYNs were clamped");
            Assert.That(sw.GetProperty("TooBigAnswered").GetInt64(), Is.GreaterThan(0), "the DF ping was answered with ICMP");
            using var peerStatus = hosts[1].Status()!;
            Assert.That(peerStatus.RootElement.GetProperty("Overlays")[0].GetProperty("Switch").GetProperty("Fragmented").GetInt64(), Is.GreaterThan(0),
                "the large echo replies without DF were fragmented by the switch");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    /// <summary>The path MTUs of the host's links that are up and have ended their first search, from its status file.</summary>
    private static int[] PathMtus(HostProcess host)
    {
        using var status = host.Status();
        if (status is null) return [];
        try
        {
            return [.. status.RootElement.GetProperty("Overlays")[0].GetProperty("Links").EnumerateArray()
                .Where(l => l.GetProperty("State").GetString() == "Up" && l.GetProperty("Statistics").ValueKind == JsonValueKind.Object
                    && l.GetProperty("Statistics").GetProperty("PathMtuSearched").GetBoolean())
                .Select(l => l.GetProperty("Statistics").GetProperty("PathMtu").GetInt32())];
        }
        catch (Exception e) when (e is KeyNotFoundException or IndexOutOfRangeException or InvalidOperationException)
        {
            return [];
        }
    }

    /// <summary>Packets counted by the DROP rule of <paramref name="chain"/> in <c>iptables -L -v -x -n</c> output.</summary>
    private static long DroppedPackets(string listing, string chain)
    {
        var inChain = false;
        foreach (var line in listing.Split('\n'))
        {
            if (line.StartsWith("Chain ", StringComparison.Ordinal)) inChain = line.StartsWith($"Chain {chain} ", StringComparison.Ordinal);
            else if (inChain && line.Contains("DROP", StringComparison.Ordinal))
                return long.Parse(line.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        throw new InvalidOperationException($"no DROP rule in {chain}:\n{listing}");
    }
}
