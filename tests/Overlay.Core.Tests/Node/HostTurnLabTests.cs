using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using static Overlay.Core.Tests.Node.HostNatLabTests;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Networks that fight back, end to end with real <c>Overlay.Host</c> processes, TAPs and coturn: a NAT that drops
/// every UDP datagram (the link comes up through TURN over TCP, or TLS on 443, and carries ping and a 100 MiB iperf3
/// transfer; once UDP passes again it moves to UDP without losing a ping), and a dead first TURN server (the second
/// one serves in the usual time).
/// </summary>
[NonParallelizable]
public partial class HostTurnLabTests
{
    [GeneratedRegex(@"up over .* after (\d+) ms")]
    private static partial Regex UpAfter();

    private static void RequireLab() => Prerequisites.RequireLab("ping", "iperf3", "ss");

    [TestCase("tcp")]
    [TestCase("tls")]
    public async Task With_udp_dropped_at_one_nat_the_link_comes_up_through_turn_over_a_stream_and_carries_tcp(string transport)
    {
        RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone], xmpp: true, turnTls: transport == "tls");
        // TCP: the lab's server as configured with no transport (tried over UDP and TCP on 3478). TLS: asked for, on 443.
        object[] turn = transport == "tcp"
            ? [new { Address = lab.StunTurn.ToString(), User = lab.Coturn.Username, Password = lab.Coturn.Password }]
            : [new { Address = $"turns:{lab.ServerAddress}:443", User = lab.Coturn.Username, Password = lab.Coturn.Password, CaFile = lab.Coturn.CaCertificatePath }];
        var port = transport == "tcp" ? lab.StunTurn.Port : 443;
        lab.Hosts[0].BlockUdp();
        var work = Directory.CreateTempSubdirectory("overlay-turn-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName, turn: turn));
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(60), "the link with UDP dropped at one NAT");
            var link = hosts[0].UpLinks().Single();
            TestContext.Out.WriteLine($"up over {link.Path} after {SetupMilliseconds(hosts[0])} ms");
            Assert.That(link.Relayed, Is.True, "with no UDP, only the relay reaches the peer");
            Assert.That(StreamsTo(lab, 0, port), Is.GreaterThan(0), $"the host holds a TCP connection to the TURN server's port {port}");

            PingAll(lab, hosts);
            var mbits = Iperf(lab, hosts, 100);
            TestContext.Out.WriteLine($"iperf3 100 MiB over TURN/{transport}: {mbits:0} Mbit/s");

            if (transport != "tcp") return;
            // UDP passes again: the link moves to a UDP path while pings keep flowing, and none is lost on the way.
            var linkId = hosts[0].Links().Single().LinkId;
            using var ping = lab.Hosts[0].Namespace.Start("ping", $"-c 200 -i 0.1 -q {hosts[1].Address}");
            lab.Hosts[0].UnblockUdp();
            var unblocked = System.Diagnostics.Stopwatch.StartNew();
            await WaitAsync(hosts, () => hosts[0].UpLinks() is [{ Relayed: false }], TimeSpan.FromSeconds(30), "the link to move to UDP");
            TestContext.Out.WriteLine($"moved to {hosts[0].UpLinks().Single().Path} {unblocked.ElapsedMilliseconds} ms after UDP was let through");
            await ping.WaitForExitAsync();
            var summary = await ping.StandardOutput.ReadToEndAsync();
            TestContext.Out.WriteLine(summary.Trim());
            Assert.That(summary, Does.Contain(" 0% packet loss"), "no ping lost while the path moved from TCP to UDP");
            Assert.That(hosts[0].Links().Single().LinkId, Is.EqualTo(linkId), "the same link moved (no new link was set up)");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    [Test]
    public async Task A_dead_first_turn_server_does_not_delay_the_relay_through_the_second()
    {
        RequireLab();
        // Symmetric to cone: only a relay joins them.
        await using var lab = await NatLab.StartAsync([NatKind.Symmetric, NatKind.Cone], xmpp: true);
        var live = new { Address = lab.StunTurn.ToString(), User = lab.Coturn.Username, Password = lab.Coturn.Password };
        var dead = new { Address = "198.51.100.9:3478", User = "node", Password = "secret" }; // on the bridge, nobody there
        // The usual time first, with the live server alone; then the dead one listed first. A gatherer that waited for
        // it would add at least 4.75 s (its UDP requests are given up then, its TCP connection after 5 s).
        var usual = await RelayedSetupAsync(lab, [live]);
        var withDead = await RelayedSetupAsync(lab, [dead, live]);
        TestContext.Out.WriteLine($"relayed link up after {usual} ms with the live server alone, {withDead} ms with a dead one first");
        Assert.That(withDead, Is.LessThan(usual + 3000), "the link came up through the second server in the usual time");
    }

    /// <summary>
    /// The first pair that works carries the link at once, and a better one that works later still wins: between two cone
    /// NATs whose direct path is cut at first (UDP between the two public addresses dropped at the first NAT), the link comes
    /// up through the relay; once the direct path passes (while the checks on it are still being retransmitted) the same
    /// link moves to the direct pair at both ends, and pings pass over it.
    /// </summary>
    [Test]
    public async Task A_link_up_through_the_relay_moves_to_the_direct_pair_that_works_later()
    {
        RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone], xmpp: true);
        var router = lab.Hosts[0].Router!;
        var peer = lab.Hosts[1].PublicAddress;
        string[] cut = [$"FORWARD -p udp -d {peer} -j DROP", $"FORWARD -p udp -s {peer} -j DROP"];
        foreach (var rule in cut) router.Exec("iptables", $"-I {rule}");
        var work = Directory.CreateTempSubdirectory("overlay-upgrade-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName));
            await hosts[0].WaitForLineAsync(" up over ", "Relayed", TimeSpan.FromSeconds(60));
            foreach (var rule in cut) router.Exec("iptables", $"-D {rule}");
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(30), "the relayed link at both ends");
            var linkId = hosts[0].Links().Single().LinkId;
            TestContext.Out.WriteLine($"link {linkId} up over {hosts[0].UpLinks().Single().Path}; direct path let through");

            await WaitAsync(hosts, () => hosts.All(h => h.UpLinks() is [{ Relayed: false }]), TimeSpan.FromSeconds(30), "the link to move to the direct pair");
            foreach (var host in hosts)
            {
                var link = host.Links().Single();
                TestContext.Out.WriteLine($"host {host.Index + 1}: now over {link.Path}");
                Assert.That(link.LinkId, Is.EqualTo(linkId), "the same link moved: no new link was set up");
                Assert.That(link.Path, Does.Contain("ServerReflexive").Or.Contain("PeerReflexive"), "a direct pair across the two NATs");
            }
            PingAll(lab, hosts);
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    /// <summary>Two hosts with <paramref name="turn"/> as their TURN servers: the relayed link's setup time (ms); pings pass.</summary>
    private static async Task<int> RelayedSetupAsync(NatLab lab, object[] turn)
    {
        var work = Directory.CreateTempSubdirectory("overlay-turn-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName, turn: turn));
            await WaitAsync(hosts, () => RingFormed(hosts) && hosts.All(h => SetupMilliseconds(h) != int.MaxValue), TimeSpan.FromSeconds(60), "the relayed link");
            var link = hosts[0].UpLinks().Single();
            Assert.That(link.Relayed, Is.True);
            Assert.That(link.Path, Does.Contain($"{lab.ServerAddress}:"), "relayed by the live server");
            PingAll(lab, hosts);
            return hosts.Max(SetupMilliseconds);
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Link setup times (edge request to the link up, as the initiating host logs it), <c>OVERLAY_SETUP_RUNS</c> runs (10)
    /// per path kind in <c>OVERLAY_SETUP_KINDS</c> (host, srflx, relay-udp, relay-tcp): two hosts start, link, stop.
    /// Prints each kind's median. Run by tests/bench/link-setup.sh, for this build and another's host.
    /// </summary>
    [Test, Explicit("a measurement (tests/bench/link-setup.sh), minutes long")]
    public async Task Link_setup_medians()
    {
        RequireLab();
        var runs = int.TryParse(Environment.GetEnvironmentVariable("OVERLAY_SETUP_RUNS"), out var r) ? r : 10;
        var kinds = (Environment.GetEnvironmentVariable("OVERLAY_SETUP_KINDS") ?? "host,srflx,relay-udp,relay-tcp").Split(',');
        foreach (var kind in kinds)
        {
            NatKind[] nats = kind switch
            {
                "host" => [NatKind.Public, NatKind.Public],
                "srflx" or "relay-tcp" => [NatKind.Cone, NatKind.Cone],
                _ => [NatKind.Symmetric, NatKind.Cone],
            };
            await using var lab = await NatLab.StartAsync(nats, xmpp: true);
            if (kind == "relay-tcp") lab.Hosts[0].BlockUdp();
            var times = new List<int>();
            var phases = new Dictionary<string, List<int>>();
            for (var run = 0; run < runs; run++)
            {
                var work = Directory.CreateTempSubdirectory("overlay-setup-");
                var hosts = new List<HostProcess>();
                try
                {
                    for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName));
                    await WaitAsync(hosts, () => RingFormed(hosts) && hosts.All(h => SetupMilliseconds(h) != int.MaxValue), TimeSpan.FromSeconds(60), $"a {kind} link");
                    var path = hosts[0].UpLinks().Single().Path.Replace(" ", "", StringComparison.Ordinal);
                    times.Add(hosts.Max(SetupMilliseconds));
                    TestContext.Out.WriteLine($"{kind} run {run + 1}: {times[^1]} ms over {path}");
                    foreach (var host in hosts)
                    {
                        var line = UpLine(host);
                        TestContext.Out.WriteLine($"PHASES {kind} run {run + 1} host {host.Index + 1}: {line}");
                        if (!line.Contains("since it was asked for", StringComparison.Ordinal)) continue; // the initiator's phases
                        foreach (Match phase in Phase().Matches(line[line.IndexOf("asked for:", StringComparison.Ordinal)..]))
                            (phases.TryGetValue(phase.Groups[1].Value, out var list) ? list : phases[phase.Groups[1].Value] = []).Add(int.Parse(phase.Groups[2].Value, CultureInfo.InvariantCulture));
                    }
                }
                finally
                {
                    foreach (var host in hosts) await host.StopAsync();
                    work.Delete(recursive: true);
                }
            }
            times.Sort();
            var median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[times.Count / 2 - 1] + times[times.Count / 2]) / 2.0;
            TestContext.Out.WriteLine($"SETUP {kind}: median {median} ms of {times.Count} (min {times[0]}, max {times[^1]})");
            TestContext.Out.WriteLine($"SETUP {kind} phases, the initiator's median ms since it asked: " + string.Join(", ",
                phases.OrderBy(p => Median(p.Value)).Select(p => $"{p.Key} {Median(p.Value):0} ({p.Value.Count})")));
        }
    }

    [GeneratedRegex(@"([a-zA-Z][a-zA-Z ]*?) (\d+)(?:,|\)|$)")]
    private static partial Regex Phase();

    private static double Median(List<int> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2.0;
    }

    /// <summary>The link's setup time as the host logged it (edge request to the link up).</summary>
    internal static int SetupMilliseconds(HostProcess host)
    {
        var match = UpAfter().Match(host.Tail());
        return match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : int.MaxValue;
    }

    /// <summary>The host's first "up over" line from "after" on (setup time and phases), or "" before it.</summary>
    private static string UpLine(HostProcess host)
    {
        var match = UpAfter().Match(host.Tail());
        if (!match.Success) return "";
        var text = host.Tail()[match.Index..];
        var end = text.IndexOf('\n', StringComparison.Ordinal);
        return (end < 0 ? text : text[..end]).Trim();
    }

    /// <summary>Established TCP connections from host <paramref name="index"/> to the lab server's <paramref name="port"/>.</summary>
    private static int StreamsTo(NatLab lab, int index, int port) =>
        lab.Hosts[index].Namespace.Exec("ss", $"-Htn state established dst {lab.ServerAddress}:{port}")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;

    /// <summary>An iperf3 transfer of <paramref name="mebibytes"/> MiB from host 0 to host 1 over the overlay; returns Mbit/s received.</summary>
    internal static double Iperf(NatLab lab, List<HostProcess> hosts, int mebibytes)
    {
        using var server = lab.Hosts[1].Namespace.Start("iperf3", $"-s -1 -B {hosts[1].Address}");
        var output = "";
        for (var attempt = 0; attempt < 50; attempt++)
        {
            output = lab.Hosts[0].Namespace.Exec("sh", $"-c \"iperf3 -c {hosts[1].Address} -n {mebibytes}M -J || true\"", TimeSpan.FromSeconds(180));
            if (!output.Contains("Connection refused", StringComparison.Ordinal)) break;
            Thread.Sleep(100); // the server is not listening yet: nothing to await from another process but its port
        }
        using var result = JsonDocument.Parse(output);
        var end = result.RootElement.GetProperty("end");
        var sent = end.GetProperty("sum_sent").GetProperty("bytes").GetInt64();
        var received = end.GetProperty("sum_received");
        Assert.That(sent, Is.GreaterThanOrEqualTo((long)mebibytes << 20), "the whole transfer was sent");
        Assert.That(received.GetProperty("bytes").GetInt64(), Is.GreaterThan(sent * 95 / 100), "and arrived");
        return received.GetProperty("bits_per_second").GetDouble() / 1e6;
    }
}
