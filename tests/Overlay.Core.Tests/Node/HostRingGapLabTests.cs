using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using static Overlay.Core.Tests.Node.HostNatLabTests;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Four <c>Overlay.Host</c> processes where one host drops every UDP datagram to and from its ring successor and no TURN
/// server is configured, so that link can never form. A bounded flood gives each linked neighbour the arc up to the next
/// one: the successor sits before the first of them, where no arc starts, and used to get none of the host's broadcasts
/// (its ARP requests among them). The kernel's ping, ARP first, must work between every pair through the other hosts.
/// </summary>
[NonParallelizable]
public class HostRingGapLabTests
{
    [Test]
    public async Task A_ring_successor_no_link_can_reach_gets_the_hosts_broadcasts_and_every_pair_pings()
    {
        Prerequisites.RequireLab("ping");
        await using var lab = await NatLab.StartAsync([NatKind.Public, NatKind.Public, NatKind.Public, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-gap-");
        var hosts = new List<HostProcess>();
        try
        {
            // Keys first, handed out in ring order: host 1 (index 1) is the ring successor of host 0.
            var inRingOrder = KeysInRingOrder(work.FullName, lab.Hosts.Count);
            var blocked = lab.Hosts[0].Namespace;
            blocked.Exec("iptables", $"-A OUTPUT -d {lab.Hosts[1].Address} -p udp -j DROP");
            blocked.Exec("iptables", $"-A INPUT -s {lab.Hosts[1].Address} -p udp -j DROP");
            for (var i = 0; i < lab.Hosts.Count; i++)
                hosts.Add(HostProcess.Start(lab, i, work.FullName, setup: new HostSetup(CertificateFile: inRingOrder[i]), turn: []));
            Assert.That(hosts.Select(h => h.NodeId), Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal), "hosts in ring order");

            // Every other pair links (each host wants its two nearest reachable successors; four hosts, so all of them).
            bool Linked(int a, int b) => hosts[a].UpLinks().Any(l => l.Peer == hosts[b].NodeId) && hosts[b].UpLinks().Any(l => l.Peer == hosts[a].NodeId);
            await WaitAsync(hosts, () => Enumerable.Range(0, 4).All(a => Enumerable.Range(a + 1, 3 - a).All(b => (a, b) == (0, 1) || Linked(a, b))),
                TimeSpan.FromSeconds(60), "every pair but the blocked one linked");
            Assert.That(hosts[0].Links().Where(l => l.Peer == hosts[1].NodeId && l.State == "Up"), Is.Empty, "the blocked pair has no link");

            // Host 0 speaks first: its ARP request for host 1 is a broadcast that only the gap copy brings to host 1 (host 1
            // asking first would put host 0's address in host 0's ARP cache without a broadcast from host 0).
            PingAll(lab, hosts);
            Assert.That(hosts[0].Links().Where(l => l.Peer == hosts[1].NodeId && l.State == "Up"), Is.Empty, "still no link: the others forwarded");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }
}
