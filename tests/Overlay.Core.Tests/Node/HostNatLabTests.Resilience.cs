using System.Diagnostics;
using System.Text.RegularExpressions;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Links outlive signaling, with real <c>Overlay.Host</c> processes behind real NATs: presence is advisory, so neither the
/// XMPP server going away nor one node's connection to it being reset ends a link whose keepalives pass (the overlay
/// trusting its own CA rather than the server); a node stopped with Ctrl+C says goodbye over its links; and a node that
/// claims another's ID is refused and told why.
/// </summary>
public partial class HostNatLabTests
{
    /// <summary>Pings at 20 a second (the issue's rate), from every host to every other, across the overlay.</summary>
    private const string PingInterval = "0.05";

    [Test]
    public async Task Pings_lose_nothing_while_prosody_is_down_for_10_s_or_one_nodes_xmpp_connection_is_reset_and_ctrl_c_is_seen_at_once()
    {
        Prerequisites.RequireLab("ping", "ss");
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone, NatKind.Symmetric, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-e2e-");
        var hosts = new List<HostProcess>();
        var pings = new List<PingRun>();
        // The overlay trusts its own CA, not the server: every host's certificate is issued by it.
        using var ca = TestCertificateAuthority.Create("lab overlay CA");
        string[] trusted = [ca.WriteCertificate(Path.Combine(work.FullName, "overlay-ca.pem"))];
        try
        {
            for (var i = 0; i < lab.Hosts.Count; i++)
                hosts.Add(HostProcess.Start(lab, i, work.FullName, setup: new HostSetup(
                    CertificateFile: ca.IssueNodeFile(Path.Combine(work.FullName, $"issued{i + 1}.pem"), $"node{i + 1}"), TrustedCertificates: trusted)));
            // The links to compare with afterwards are those of a settled overlay: a link still being set up when the
            // first snapshot is taken would show up after the outage as one that appeared.
            await WaitAsync(hosts, () => RingFormed(hosts) && LinksSettled(hosts) && hosts.All(h => h.Signaling() == "Connected"),
                TimeSpan.FromSeconds(60), "the ring of four, every link up on both sides");
            PingAll(lab, hosts); // neighbours' ARP entries are in place before counting
            var linksBefore = LinkIds(hosts);
            foreach (var from in hosts)
                foreach (var to in hosts.Where(h => h != from))
                    pings.Add(PingRun.Start(lab.Hosts[from.Index].Namespace, from.Address, to.Address));

            // (a) The XMPP server stops (it sends every session an unavailable presence as it goes) and is back after 10 s.
            var clock = Stopwatch.StartNew();
            await lab.Prosody.StopAsync();
            await WaitAsync(hosts, () => hosts.All(h => h.Signaling() != "Connected"), TimeSpan.FromSeconds(15), "every host to lose signaling");
            await Task.Delay(TimeSpan.FromSeconds(10)); // the outage itself: what is being survived, not a wait for an event
            await lab.Prosody.StartAgainAsync();
            await WaitAsync(hosts, () => hosts.All(h => h.Signaling() == "Connected"), TimeSpan.FromSeconds(90), "every host to reconnect");
            var serverBack = clock.Elapsed;

            // (b) One node's TCP connection to the server is reset at its NAT, and refused for 5 s; its UDP goes on.
            var victim = hosts[0];
            lab.Hosts[victim.Index].ResetTcp(lab.ServerAddress, lab.Xmpp.Port);
            await WaitAsync(hosts, () => victim.Signaling() != "Connected", TimeSpan.FromSeconds(10), "the reset host to lose signaling");
            await Task.Delay(TimeSpan.FromSeconds(5)); // the outage itself
            lab.Hosts[victim.Index].AllowTcp(lab.ServerAddress, lab.Xmpp.Port);
            await WaitAsync(hosts, () => hosts.All(h => h.Signaling() == "Connected"), TimeSpan.FromSeconds(90), "the reset host to reconnect");
            // One keepalive round after the last event, so that anything it broke would have shown.
            await Task.Delay(TimeSpan.FromSeconds(3));

            var results = await Task.WhenAll(pings.Select(p => p.StopAsync()));
            pings.Clear();
            foreach (var r in results) TestContext.Out.WriteLine(r);
            TestContext.Out.WriteLine($"server back and every host reconnected {serverBack.TotalSeconds:0.0} s after the stop; all done at {clock.Elapsed.TotalSeconds:0.0} s");
            Assert.Multiple(() =>
            {
                foreach (var r in results)
                {
                    Assert.That(r.Lost, Is.Empty, $"{r.From} -> {r.To}: no ping lost");
                    Assert.That(r.InFlightAtStop, Is.LessThanOrEqualTo(2), $"{r.From} -> {r.To}: still answered when stopped");
                    // Started before the first outage, answered at the stop after the last, none missing between: ran through both.
                    Assert.That(r.Replied, Is.GreaterThan(0), $"{r.From} -> {r.To}: pings ran");
                }
            });
            Assert.That(LinkIds(hosts), Is.EqualTo(linksBefore), "every link that was up before is the same link after: none was closed or replaced");

            // (c) Ctrl+C: the node says goodbye over its links, and its peers see it gone at once, not after the dead-peer timeout.
            var leaving = hosts[3];
            var peers = hosts.Where(h => h != leaving && h.UpLinks().Any(l => l.Peer == leaving.NodeId)).ToArray();
            Assert.That(peers, Is.Not.Empty);
            // Whichever comes first closes the link: the goodbye over the link itself ("the peer said goodbye"), or the teardown
            // it also signals ("closed by the peer"). Either way not a timeout ("Down", after the dead-peer timeout).
            var seen = peers.Select(p => p.WaitForLineAsync($"link to {leaving.NodeId} Closed: ", "the peer", TimeSpan.FromSeconds(5))).ToArray();
            var interrupted = Stopwatch.StartNew();
            leaving.Interrupt();
            await Task.WhenAll(seen);
            var goneAfter = interrupted.Elapsed;
            Assert.That(await leaving.WaitForExitAsync(TimeSpan.FromSeconds(15)), Is.Zero, "Ctrl+C is a clean stop");
            TestContext.Out.WriteLine($"Ctrl+C on {leaving.Address}: all {peers.Length} peers saw its goodbye {goneAfter.TotalMilliseconds:0} ms later");
        }
        finally
        {
            foreach (var p in pings) await p.StopAsync();
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    [Test]
    public async Task A_node_claiming_another_members_node_id_is_refused_and_told_while_the_victim_loses_no_ping()
    {
        Prerequisites.RequireLab("ping");
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-e2e-");
        var hosts = new List<HostProcess>();
        PingRun? ping = null;
        try
        {
            hosts.Add(HostProcess.Start(lab, 0, work.FullName));
            hosts.Add(HostProcess.Start(lab, 1, work.FullName));
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(60), "the victim and a third member linked");
            var (victim, third) = (hosts[0], hosts[1]);
            PingAll(lab, hosts);
            ping = PingRun.Start(lab.Hosts[third.Index].Namespace, third.Address, victim.Address);

            // A member (account node3) writes the victim's node ID into its configuration, with a key of its own.
            var claimant = HostProcess.Start(lab, 2, work.FullName, setup: new HostSetup(NodeId: victim.NodeId));
            Assert.That(await claimant.WaitForExitAsync(TimeSpan.FromSeconds(30)), Is.Not.Zero, "a node ID its key does not own is a configuration error");
            Assert.That(claimant.Tail(), Does.Contain(victim.NodeId).And.Contain("does not belong to the key"));

            // It copies the victim's key file as well: now it is the victim, cryptographically, on another account.
            var copy = Path.Combine(work.FullName, "copied.pem");
            File.Copy(Path.Combine(work.FullName, "node1.pem"), copy);
            claimant = HostProcess.Start(lab, 2, work.FullName, setup: new HostSetup(CertificateFile: copy));
            hosts.Add(claimant);
            Assert.That(claimant.NodeId, Is.EqualTo(victim.NodeId));
            await WaitAsync(hosts, () => claimant.NodeIdConflicts().Count > 0 && victim.NodeIdConflicts().Count > 0, TimeSpan.FromSeconds(30),
                "both to see the conflict in their status");
            await claimant.WaitForLineAsync("node ID conflict", victim.NodeId, TimeSpan.FromSeconds(5));
            await victim.WaitForLineAsync("node ID conflict", "a copied key?", TimeSpan.FromSeconds(5));
            // The third member listed the victim first: the claim is refused there, and the claimant gets no link to it.
            await third.WaitForLineAsync("claims node " + victim.NodeId, "refused", TimeSpan.FromSeconds(10));
            // That it gets no link is an absence, which only a window of time can show: the claimant tries for links to its
            // ring neighbours at once, and a member that answered would have a link up within this window.
            await Task.Delay(TimeSpan.FromSeconds(5));
            Assert.That(claimant.UpLinks(), Is.Empty, "no member links to the claimant");
            Assert.That(third.UpLinks().Select(l => l.Peer), Does.Contain(victim.NodeId));

            var result = await ping.StopAsync();
            ping = null;
            TestContext.Out.WriteLine(result);
            Assert.That(result.Lost, Is.Empty, "the victim stays reachable with no loss");
            Assert.That(result.InFlightAtStop, Is.LessThanOrEqualTo(2), "and is still answering at the end");
            Assert.That(result.Replied, Is.GreaterThan(100));
        }
        finally
        {
            if (ping is not null) await ping.StopAsync();
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    /// <summary>Every link each host lists is up, and up with the same ID at its peer: nothing is being set up or ended.</summary>
    private static bool LinksSettled(List<HostProcess> hosts)
    {
        var links = hosts.ToDictionary(h => h.NodeId, h => h.Links());
        return links.All(host => host.Value.All(l => l.State == "Up"
            && links.TryGetValue(l.Peer, out var theirs) && theirs.Any(t => t.Peer == host.Key && t.LinkId == l.LinkId && t.State == "Up")));
    }

    /// <summary>Each host's up links by peer and link ID.</summary>
    private static Dictionary<string, string[]> LinkIds(List<HostProcess> hosts) =>
        hosts.ToDictionary(h => h.NodeId, h => h.Links().Where(l => l.State == "Up").Select(l => $"{l.Peer}/{l.LinkId}").Order(StringComparer.Ordinal).ToArray());

    /// <summary>
    /// A kernel ping running until stopped. Losses are the sequence numbers without a reply up to the last one answered;
    /// the last request or two may still be in flight when it is stopped, so they are not counted as lost, but every
    /// request before the last reply is.
    /// </summary>
    private sealed partial class PingRun
    {
        private readonly Process _process;
        private readonly System.Text.StringBuilder _output = new();

        private PingRun(Process process, string from, string to)
        {
            _process = process;
            From = from;
            To = to;
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public string From { get; }

        public string To { get; }

        public static PingRun Start(NetNamespace ns, string from, string to) =>
            new(ns.Start("env", $"--default-signal=INT ping -n -i {PingInterval} -W 1 {to}"), from, to);

        public async Task<PingResult> StopAsync()
        {
            if (!_process.HasExited) Process.Start("kill", $"-INT {_process.Id}")?.WaitForExit();
            using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10))) await _process.WaitForExitAsync(wait.Token);
            string text;
            lock (_output) text = _output.ToString();
            var replied = Reply().Matches(text).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
            var sent = Sent().Match(text) is { Success: true } s ? int.Parse(s.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
            var last = replied.Count == 0 ? 0 : replied.Max();
            var lost = Enumerable.Range(1, last).Where(seq => !replied.Contains(seq)).ToArray();
            return new PingResult(From, To, sent, replied.Count, lost, sent - last);
        }

        [GeneratedRegex(@"icmp_seq=(\d+) ttl=\d+ time=")]
        private static partial Regex Reply();

        [GeneratedRegex(@"(\d+) packets transmitted")]
        private static partial Regex Sent();
    }

    private sealed record PingResult(string From, string To, int Sent, int Replied, int[] Lost, int InFlightAtStop)
    {
        public override string ToString() =>
            $"ping {From} -> {To}: {Sent} sent, {Replied} replied, lost {(Lost.Length == 0 ? "none" : string.Join(',', Lost.Take(20)) + (Lost.Length > 20 ? "..." : ""))}, {InFlightAtStop} unanswered at the stop";
    }
}
