using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using static Overlay.Core.Tests.Node.HostNatLabTests;
using static Overlay.Core.Tests.Node.HostTurnLabTests;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Real <c>Overlay.Host</c>s in the IPv6-only lab (<see cref="NatLab"/> with <c>ipv6: true</c>: no IPv4 address but
/// loopback anywhere; prosody and coturn on 2001:db8:100::10; NAT66 routers): two hosts behind IPv6 NATs link directly
/// through their server-reflexive addresses and ping; a NATed and a public host whose direct UDP is dropped link through
/// coturn's IPv6 relay and ping; over a 1280-byte IPv6 path the link counts IPv6's 40-byte header.
/// </summary>
[NonParallelizable]
public class HostIPv6LabTests
{
    private static void RequireLab() => Prerequisites.RequireLab("ping", "ip6tables");

    [Test]
    public async Task Two_hosts_behind_ipv6_nats_link_directly_and_ping()
    {
        RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone], xmpp: true, ipv6: true);
        AssertNoIPv4(lab);
        await RunAsync(lab, (hosts, link) =>
        {
            Assert.That(link.Relayed, Is.False, "cone NAT66 on both sides: a direct path");
            Assert.That((link.LocalType, link.RemoteType), Is.EqualTo(("ServerReflexive", "ServerReflexive")), $"{link}");
            Assert.That(link.Remote.Address, Is.EqualTo(lab.Hosts[1].PublicAddress), "to the peer's NAT66 mapping");
        });
    }

    [Test]
    public async Task With_direct_udp_dropped_a_natted_and_a_public_host_link_through_the_ipv6_relay_and_ping()
    {
        RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Public], xmpp: true, ipv6: true);
        AssertNoIPv4(lab);
        lab.Hosts[0].BlockUdpWith(lab.Hosts[1].PublicAddress);
        await RunAsync(lab, (hosts, link) =>
        {
            Assert.That(link.Relayed, Is.True, "only the relay joins them");
            var relayed = link.LocalType == "Relayed" ? link.Local : link.Remote;
            Assert.That(relayed.Address, Is.EqualTo(lab.ServerAddress), $"an IPv6 relay of coturn's: {link}");
        });
    }

    [Test]
    public async Task Over_a_1280_ipv6_path_the_link_counts_forty_bytes_of_ip_header()
    {
        RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Public, NatKind.Public], xmpp: true, ipv6: true);
        lab.SetPathMtu(0, 1280);
        lab.SetPathMtu(1, 1280);
        var work = Directory.CreateTempSubdirectory("overlay-ipv6-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName));
            await WaitAsync(hosts, () => RingFormed(hosts) && hosts.All(h => PathMtuOf(h) is 1280), TimeSpan.FromSeconds(60),
                "the link and both ends' path MTU search");
            // An outer packet of 1280: 48 bytes of IPv6 and UDP, 26 of the link's sealing, 14 of Ethernet.
            const int innerMtu = 1280 - 48 - 26 - 14;
            var a = lab.Hosts[0].Namespace;
            var tooBig = a.Exec("sh", $"-c \"ping -M do -s {1410 - 28} -c 2 -W 2 {hosts[1].Address} 2>&1 || true\"", TimeSpan.FromSeconds(20));
            TestContext.Out.WriteLine(tooBig);
            Assert.That(tooBig, Does.Match($"mtu ?= ?{innerMtu}"), "ICMP fragmentation needed with the size an IPv6 path leaves");
            Assert.That(() => a.Exec("ping", $"-M do -s {innerMtu - 28} -c 3 -w 10 {hosts[1].Address}", TimeSpan.FromSeconds(15)), Throws.Nothing,
                "the largest packet that fits is answered");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    private sealed record Path(string LocalType, IPEndPoint Local, string RemoteType, IPEndPoint Remote, bool Relayed)
    {
        public override string ToString() => $"{LocalType} {Local} -> {RemoteType} {Remote}";
    }

    /// <summary>Starts two hosts, waits for their link, checks its path (IPv6 both ends, then <paramref name="check"/>) and pings both ways.</summary>
    private static async Task RunAsync(NatLab lab, Action<List<HostProcess>, Path> check)
    {
        var work = Directory.CreateTempSubdirectory("overlay-ipv6-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName));
            await WaitAsync(hosts, () => RingFormed(hosts) && hosts.All(h => SetupMilliseconds(h) != int.MaxValue && PathOf(h) is not null),
                TimeSpan.FromSeconds(60), "the link over IPv6");
            foreach (var host in hosts)
            {
                var path = PathOf(host)!;
                TestContext.Out.WriteLine($"{host.Address}: up over {path} after {SetupMilliseconds(host)} ms");
                Assert.That((path.Local.AddressFamily, path.Remote.AddressFamily), Is.EqualTo((AddressFamily.InterNetworkV6, AddressFamily.InterNetworkV6)), $"{path}");
            }
            check(hosts, PathOf(hosts[0])!);
            PingAll(lab, hosts);
            var summary = lab.Hosts[0].Namespace.Exec("ping", $"-c 20 -i 0.2 -q {hosts[1].Address}", TimeSpan.FromSeconds(30));
            TestContext.Out.WriteLine(summary.Trim());
            Assert.That(summary, Does.Contain(" 0% packet loss"));
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    /// <summary>The lab has no IPv4 but loopback: whatever links, links over IPv6.</summary>
    private static void AssertNoIPv4(NatLab lab)
    {
        foreach (var ns in lab.Hosts.Select(h => h.Namespace).Append(lab.Server))
            Assert.That(ns.Exec("ip", "-4 -o addr show scope global").Trim(), Is.Empty, $"no IPv4 address in {ns.Name}");
    }

    /// <summary>The path of the host's one link that is up, from its status file, or null.</summary>
    private static Path? PathOf(HostProcess host)
    {
        using var status = host.Status();
        if (status is null) return null;
        try
        {
            foreach (var link in status.RootElement.GetProperty("Overlays")[0].GetProperty("Links").EnumerateArray())
            {
                if (link.GetProperty("State").GetString() != "Up" || link.GetProperty("Path") is not { ValueKind: JsonValueKind.Object } p) continue;
                return new Path(p.GetProperty("LocalType").GetString()!, IPEndPoint.Parse(p.GetProperty("Local").GetString()!),
                    p.GetProperty("RemoteType").GetString()!, IPEndPoint.Parse(p.GetProperty("Remote").GetString()!), p.GetProperty("Relayed").GetBoolean());
            }
        }
        catch (Exception e) when (e is KeyNotFoundException or IndexOutOfRangeException or InvalidOperationException or FormatException)
        {
            return null;
        }
        return null;
    }

    /// <summary>The path MTU of the host's link once its first search ended, or 0.</summary>
    private static int PathMtuOf(HostProcess host)
    {
        using var status = host.Status();
        if (status is null) return 0;
        try
        {
            foreach (var link in status.RootElement.GetProperty("Overlays")[0].GetProperty("Links").EnumerateArray())
                if (link.GetProperty("Statistics") is { ValueKind: JsonValueKind.Object } s && s.GetProperty("PathMtuSearched").GetBoolean())
                    return s.GetProperty("PathMtu").GetInt32();
        }
        catch (Exception e) when (e is KeyNotFoundException or IndexOutOfRangeException or InvalidOperationException)
        {
            return 0;
        }
        return 0;
    }
}
