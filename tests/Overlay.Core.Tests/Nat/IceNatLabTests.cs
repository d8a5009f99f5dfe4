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

    private static async Task RunAsync(NatKind[] kinds, bool useTurn, string label, Action<IceSelectedPair, IceSelectedPair> assertTypes)
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("turnserver", "coturn");
        await using var lab = await NatLab.StartAsync(kinds);
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
            await IcePeers.ExchangeDatagramsAsync(a, b, 5);
        }
        times.Sort();
        TestContext.Out.WriteLine($"median time to a nominated pair ({label}, {Runs} runs, including gathering): {times[Runs / 2]:F0} ms");
    }
}
