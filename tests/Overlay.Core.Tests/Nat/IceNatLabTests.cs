using System.Diagnostics;
using NUnit.Framework;
using Overlay.Nat.Ice;
using Overlay.Nat.Turn;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Nat;

/// <summary>
/// Two agents in network namespaces behind real iptables NATs, with coturn on the lab's "internet". Each case runs
/// several times: every run asserts the selected candidate types and moves datagrams both ways; the median time from
/// agent creation to both pairs selected is printed.
/// </summary>
[NonParallelizable]
public class IceNatLabTests
{
    private const int Runs = 5;

    [Test]
    public Task Two_public_hosts_on_one_LAN_connect_over_host_candidates() =>
        RunAsync([NatKind.Public, NatKind.Public], useTurn: false, "host", (a, b) =>
        {
            Assert.That(a.Local.Type, Is.EqualTo(IceCandidateType.Host));
            Assert.That(a.Remote.Type, Is.EqualTo(IceCandidateType.Host));
            Assert.That(b.Local.Type, Is.EqualTo(IceCandidateType.Host));
            Assert.That(b.Remote.Type, Is.EqualTo(IceCandidateType.Host));
        });

    [Test]
    public Task Two_cone_NATs_connect_over_server_reflexive_candidates_without_relay() =>
        RunAsync([NatKind.Cone, NatKind.Cone], useTurn: false, "srflx", (a, b) =>
        {
            Assert.That(a.Local.Type, Is.EqualTo(IceCandidateType.ServerReflexive));
            Assert.That(a.Remote.Type, Is.EqualTo(IceCandidateType.ServerReflexive));
            Assert.That(b.Local.Type, Is.EqualTo(IceCandidateType.ServerReflexive));
            Assert.That(b.Remote.Type, Is.EqualTo(IceCandidateType.ServerReflexive));
        });

    [Test]
    public Task Two_symmetric_NATs_connect_through_the_TURN_relay() =>
        RunAsync([NatKind.Symmetric, NatKind.Symmetric], useTurn: true, "relay", (a, b) =>
        {
            Assert.That(a.IsRelayed, Is.True, $"{a}");
            Assert.That(b.IsRelayed, Is.True, $"{b}");
        });

    /// <summary>
    /// Only A has a TURN server and both NATs are symmetric, so A's relay is the one path. A's router then maps its
    /// socket to a new port: coturn knows the allocation only by the old 5-tuple, so a restart that kept it would never
    /// connect. Gathering again after the restart must notice (the refresh is refused) and allocate anew.
    /// </summary>
    [Test]
    public async Task A_relay_lost_with_a_changed_mapping_is_allocated_again_after_a_restart()
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("turnserver", "coturn");
        Prerequisites.RequireCommand("conntrack", "conntrack");
        await using var lab = await NatLab.StartAsync([NatKind.Symmetric, NatKind.Symmetric]);
        var stunOnly = new IceOptions { StunServers = [lab.StunTurn] };
        var logA = new ListLoggerFactory("A");
        await using var a = lab.Hosts[0].Namespace.Run(() => IceAgent.Create(stunOnly with
        {
            TurnServers = [new TurnServer(lab.StunTurn, lab.Coturn.Username, lab.Coturn.Password)], LoggerFactory = logA,
        }, IceRole.Controlling));
        await using var b = lab.Hosts[1].Namespace.Run(() => IceAgent.Create(stunOnly, IceRole.Controlled));
        var (before, _) = await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(20));
        Assert.That(before.Local.Type, Is.EqualTo(IceCandidateType.Relayed), $"{before}");
        await IcePeers.ExchangeDatagramsAsync(a, b, 5);

        lab.Hosts[0].RemapUdp();
        a.Restart();
        b.Restart();
        var (after, _) = await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(20));
        TestContext.Out.WriteLine($"before {before}\nafter  {after}");
        Assert.That(after.Local.Type, Is.EqualTo(IceCandidateType.Relayed), $"{after}");
        Assert.That(after.Local.Address, Is.Not.EqualTo(before.Local.Address), "a new allocation, not the lost one");
        Assert.That(a.LocalCandidates.Count(c => c.Type == IceCandidateType.Relayed), Is.EqualTo(1), "the lost relay is withdrawn");
        Assert.That(logA.Lines, Has.Some.Contains("no longer refreshes"));
        await IcePeers.ExchangeDatagramsAsync(a, b, 5);
    }

    /// <summary>
    /// The IPv6-only lab (no IPv4 address anywhere but loopback): host candidates, server-reflexive ones through NAT66
    /// and relays that coturn allocates on IPv6 because they are asked for (REQUESTED-ADDRESS-FAMILY). Every candidate
    /// is IPv6, and the channel counts IPv6's 40-byte header in its path overhead.
    /// </summary>
    [TestCase(NatKind.Public, NatKind.Public, false, IceCandidateType.Host)]
    [TestCase(NatKind.Cone, NatKind.Cone, false, IceCandidateType.ServerReflexive)]
    [TestCase(NatKind.Symmetric, NatKind.Symmetric, true, IceCandidateType.Relayed)]
    public Task An_ipv6_only_lab_connects(NatKind first, NatKind second, bool useTurn, IceCandidateType expected) =>
        RunAsync([first, second], useTurn, $"ipv6 {expected}", (a, b) =>
        {
            foreach (var pair in new[] { a, b })
            {
                Assert.That(pair.Local.Address.AddressFamily, Is.EqualTo(System.Net.Sockets.AddressFamily.InterNetworkV6), $"{pair}");
                Assert.That(pair.Remote.Address.AddressFamily, Is.EqualTo(System.Net.Sockets.AddressFamily.InterNetworkV6), $"{pair}");
                if (expected == IceCandidateType.Relayed) Assert.That(pair.IsRelayed, Is.True, $"{pair}");
                else Assert.That((pair.Local.Type, pair.Remote.Type), Is.EqualTo((expected, expected)), $"{pair}");
            }
        }, ipv6: true, (a, b) =>
        {
            foreach (var agent in new[] { a, b })
            {
                Assert.That(agent.LocalCandidates.Select(c => c.Address.AddressFamily), Has.All.EqualTo(System.Net.Sockets.AddressFamily.InterNetworkV6));
                Assert.That(agent.LocalCandidates.Select(c => c.Address.Address.IsIPv6LinkLocal), Has.All.False, "no link-local candidate");
                // IPv6 and UDP headers (48 bytes), and ChannelData's 4 when relayed.
                Assert.That(agent.Channel.PathOverhead, Is.EqualTo(agent.Selected!.ViaRelay ? 52 : 48), $"{agent.Selected}");
            }
        });

    private static async Task RunAsync(NatKind[] kinds, bool useTurn, string label, Action<IceSelectedPair, IceSelectedPair> assertTypes,
        bool ipv6 = false, Action<IceAgent, IceAgent>? assertAgents = null)
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("turnserver", "coturn");
        await using var lab = await NatLab.StartAsync(kinds, ipv6: ipv6);
        var options = new IceOptions
        {
            StunServers = [lab.StunTurn],
            TurnServers = useTurn ? [new TurnServer(lab.StunTurn, lab.Coturn.Username, lab.Coturn.Password)] : [],
        };
        var times = new List<double>();
        for (var run = 0; run < Runs; run++)
        {
            var clock = Stopwatch.StartNew();
            var logA = new ListLoggerFactory("A");
            var logB = new ListLoggerFactory("B");
            await using var a = lab.Hosts[0].Namespace.Run(() => IceAgent.Create(options with { LoggerFactory = logA }, IceRole.Controlling));
            await using var b = lab.Hosts[1].Namespace.Run(() => IceAgent.Create(options with { LoggerFactory = logB }, IceRole.Controlled));
            IceSelectedPair pa, pb;
            try
            {
                (pa, pb) = await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(20));
            }
            catch (Exception)
            {
                foreach (var line in logA.Lines.Concat(logB.Lines).Order(StringComparer.Ordinal)) TestContext.Out.WriteLine(line);
                throw;
            }
            clock.Stop();
            times.Add(clock.Elapsed.TotalMilliseconds);
            TestContext.Out.WriteLine($"{label} run {run}: {clock.Elapsed.TotalMilliseconds:F0} ms  A {pa.Local.Type}->{pa.Remote.Type}  B {pb.Local.Type}->{pb.Remote.Type}");
            assertTypes(pa, pb);
            assertAgents?.Invoke(a, b);
            await IcePeers.ExchangeDatagramsAsync(a, b, 5);
        }
        times.Sort();
        TestContext.Out.WriteLine($"median time to a nominated pair ({label}, {Runs} runs, including gathering): {times[Runs / 2]:F0} ms");
    }
}
