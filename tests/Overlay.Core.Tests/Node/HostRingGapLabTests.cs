using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using static Overlay.Core.Tests.Node.HostNatLabTests;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Four <c>Overlay.Host</c> processes where hosts drop every UDP datagram to and from some of their ring neighbours and no
/// TURN server is configured, so those links can never form. A bounded flood gives each linked neighbour the arc up to the
/// next one: a successor with no link sits before the first of them, where no arc starts, and used to get none of the
/// host's broadcasts (its ARP requests among them). The kernel's ping, ARP first, must work between every pair through
/// the other hosts.
/// </summary>
[NonParallelizable]
public class HostRingGapLabTests
{
    [Test]
    public Task A_ring_successor_no_link_can_reach_gets_the_hosts_broadcasts_and_every_pair_pings() =>
        PingsThroughGapsAsync("overlay-gap-", [(0, 1)]);

    /// <summary>
    /// Host 1 is linked on neither ring side, only to host 3. Host 0's broadcasts reach it through the gap relay: host 0
    /// marks its gap on host 2's copy, host 2 has no link into it and has host 3 pass a copy to host 1. Without the relay,
    /// host 0's first ping to host 1 got no answer.
    /// </summary>
    [Test]
    public Task A_member_linked_on_neither_ring_side_gets_every_hosts_broadcasts_and_every_pair_pings() =>
        PingsThroughGapsAsync("overlay-gap2-", [(1, 0), (1, 2)]);

    /// <summary>
    /// Blocks UDP between each pair of <paramref name="blocked"/> (in the first one's namespace), with keys handed out in
    /// ring order (host i is host i-1's ring successor); waits until every other pair is linked (each host wants its two
    /// nearest reachable successors: four hosts, so all of them), then pings every ordered pair, host 0 first.
    /// </summary>
    private static async Task PingsThroughGapsAsync(string prefix, (int From, int To)[] blocked)
    {
        Prerequisites.RequireLab("ping");
        await using var lab = await NatLab.StartAsync([NatKind.Public, NatKind.Public, NatKind.Public, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory(prefix);
        var hosts = new List<HostProcess>();
        try
        {
            var inRingOrder = KeysInRingOrder(work.FullName, lab.Hosts.Count);
            foreach (var (from, to) in blocked)
            {
                lab.Hosts[from].Namespace.Exec("iptables", $"-A OUTPUT -d {lab.Hosts[to].Address} -p udp -j DROP");
                lab.Hosts[from].Namespace.Exec("iptables", $"-A INPUT -s {lab.Hosts[to].Address} -p udp -j DROP");
            }
            for (var i = 0; i < lab.Hosts.Count; i++)
                hosts.Add(HostProcess.Start(lab, i, work.FullName, setup: new HostSetup(CertificateFile: inRingOrder[i]), turn: []));
            Assert.That(hosts.Select(h => h.NodeId), Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal), "hosts in ring order");

            bool Blocked(int a, int b) => blocked.Any(p => (p.From, p.To) == (a, b) || (p.From, p.To) == (b, a));
            bool Linked(int a, int b) => hosts[a].UpLinks().Any(l => l.Peer == hosts[b].NodeId) && hosts[b].UpLinks().Any(l => l.Peer == hosts[a].NodeId);
            bool NoBlockedLink() => blocked.All(p => !hosts[p.From].Links().Any(l => l.Peer == hosts[p.To].NodeId && l.State == "Up"));
            await WaitAsync(hosts, () => Enumerable.Range(0, 4).All(a => Enumerable.Range(a + 1, 3 - a).All(b => Blocked(a, b) || Linked(a, b))),
                TimeSpan.FromSeconds(60), "every pair but the blocked ones linked");
            Assert.That(NoBlockedLink(), Is.True, "the blocked pairs have no link");

            // Host 0 speaks first: its ARP request for host 1 is a broadcast that only a gap's copy brings to host 1 (host 1
            // asking first would put host 0's address in host 0's ARP cache without a broadcast from host 0).
            PingAll(lab, hosts);
            Assert.That(NoBlockedLink(), Is.True, "still no link: the others forwarded");
            // The status shows the floods that went around the missing links.
            var gapCopies = 0L;
            foreach (var host in hosts)
                using (var status = await host.NextStatusAsync())
                    gapCopies += status.RootElement.GetProperty("Overlays")[0].GetProperty("Switch").GetProperty("GapCopies").GetInt64();
            TestContext.Out.WriteLine($"flood copies around ring gaps, all hosts: {gapCopies}");
            Assert.That(gapCopies, Is.GreaterThan(0));
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }
}
