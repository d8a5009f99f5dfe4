using System.Diagnostics;
using System.Text.Json;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Browser;
using Overlay.TestSupport.Lab;
using HostProcess = Overlay.Core.Tests.Node.HostNatLabTests.HostProcess;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// The live map of a real run: four <c>Overlay.Host</c> processes behind cone, symmetric and no NAT (as in
/// <see cref="HostNatLabTests"/>); the first serves its map (<c>run --map</c>) on its namespace's loopback, and headless
/// Chromium, in that namespace, loads it. The page shows the node, its peers and its links with their paths; when the
/// direct path to a peer is blocked at the NAT router, the same open page shows that link come back over the relay.
/// <c>overlay status</c> answers from the same host through its control socket. And the host as systemd runs it.
/// </summary>
[NonParallelizable]
public class HostMapLabTests
{
    [Test]
    public async Task The_map_of_a_four_host_run_shows_its_links_and_a_blocked_direct_link_turning_to_relay()
    {
        Prerequisites.RequireLab("chromium");
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone, NatKind.Symmetric, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-map-");
        var hosts = new List<HostProcess>();
        // Short timings, so that the blocked link is found silent within seconds.
        var timings = new { KeepaliveInterval = 0.5, DeadPeerTimeout = 3, RestartInterval = 2 };
        try
        {
            for (var i = 0; i < lab.Hosts.Count; i++)
                hosts.Add(HostProcess.Start(lab, i, work.FullName, timings, extra: i == 0 ? "--map 127.0.0.1:8080" : ""));
            await HostNatLabTests.WaitAsync(hosts, () => HostNatLabTests.RingFormed(hosts), TimeSpan.FromSeconds(60), "the ring of four");
            var me = hosts[0];
            // A direct link of the first host's (to the other cone host or the public one: ICE picks the path, and
            // on a loaded machine a relay pair may win the race) is the one whose direct path will be blocked.
            await HostNatLabTests.WaitAsync(hosts, () => me.UpLinks().Any(l => !l.Relayed), TimeSpan.FromSeconds(60), "a direct link of the first host");
            var peer = hosts.Single(h => h.NodeId == me.UpLinks().First(l => !l.Relayed).Peer);

            await using var browser = await HeadlessChromium.StartAsync(lab.Hosts[0].Namespace);
            await browser.OpenAsync(new Uri("http://127.0.0.1:8080/"));
            var upLinks = me.UpLinks();
            await browser.WaitForAsync($"document.body.dataset.nodes === '4' && document.body.dataset.up === '{upLinks.Count}'", TimeSpan.FromSeconds(30));
            Assert.That((string?)await browser.EvaluateAsync("document.getElementById('self').textContent"), Is.EqualTo(me.NodeId));
            Assert.That((int?)await browser.EvaluateAsync("document.querySelectorAll('#ring g.node').length"), Is.EqualTo(4), "four nodes on the ring");
            Assert.That((int?)await browser.EvaluateAsync("document.querySelectorAll('#ring path.link').length"), Is.EqualTo(me.Links().Count), "one drawn link per link");
            Assert.That((int?)await browser.EvaluateAsync("document.querySelectorAll('#links tr').length"), Is.EqualTo(me.Links().Count), "one table row per link");
            var peerLink = $"document.querySelector('#ring path.link[data-peer=\"{peer.NodeId}\"]')";
            Assert.That((string?)await browser.EvaluateAsync($"{peerLink}.dataset.type"), Is.AnyOf("srflx", "host", "prflx"), "the direct link is drawn as direct");
            await browser.ScreenshotAsync(Path.Combine(work.FullName, "before.png"));

            // overlay status, from the same namespace, through the control socket.
            var ns = lab.Hosts[0].Namespace;
            var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : Prerequisites.FindOnPath("dotnet") ?? "dotnet";
            var json = ns.Exec(dotnet, $"{Path.Combine(AppContext.BaseDirectory, "Overlay.Host.dll")} status --json --control-socket {me.ControlSocket}", TimeSpan.FromSeconds(30));
            using (var status = JsonDocument.Parse(json))
            {
                var overlay = status.RootElement.GetProperty("Overlays")[0];
                Assert.That(overlay.GetProperty("MemberIds").GetArrayLength(), Is.EqualTo(4), "overlay status lists the four members");
                Assert.That(overlay.GetProperty("Status").GetProperty("Links").GetArrayLength(), Is.EqualTo(me.Links().Count));
            }

            // Block the direct path between the two hosts at the first one's router; the TURN server stays reachable.
            var router = lab.Hosts[0].Router!;
            var peerPublic = lab.Hosts[peer.Index].PublicAddress;
            var blocked = Stopwatch.StartNew();
            router.Exec("iptables", $"-I FORWARD -s {lab.Hosts[0].Address} -d {peerPublic} -p udp -j DROP");
            router.Exec("iptables", $"-I FORWARD -s {peerPublic} -d {lab.Hosts[0].Address} -p udp -j DROP");
            await browser.WaitForAsync($"{peerLink} && {peerLink}.dataset.type === 'relay' && {peerLink}.dataset.state === 'Up'", TimeSpan.FromSeconds(60));
            TestContext.Out.WriteLine($"the open page showed the link to the {lab.Hosts[peer.Index].Kind} host over the relay {blocked.ElapsedMilliseconds} ms after the block");
            Assert.That((int?)await browser.EvaluateAsync("+document.body.dataset.relay"), Is.GreaterThanOrEqualTo(1));
            Assert.That(await browser.EvaluateAsync($"document.querySelector('#links tr[data-peer=\"{peer.NodeId}\"]').cells[3].textContent"), Is.Not.Null);
            Assert.That((string?)await browser.EvaluateAsync($"document.querySelector('#links tr[data-peer=\"{peer.NodeId}\"]').cells[3].textContent"), Is.EqualTo("relay"),
                "the table says relay too");
            var shot = Path.Combine(TestContext.CurrentContext.WorkDirectory, "map-lab.png");
            await browser.ScreenshotAsync(shot);
            TestContext.AddTestAttachment(shot, "the map of a four-host run, one link relayed after its direct path was blocked");

            // SIGTERM (as systemctl stop sends it): the host tears down and exits 0, its control socket gone.
            await me.StopAsync();
            Assert.That(me.ExitCode, Is.EqualTo(0), me.Tail());
            Assert.That(File.Exists(me.ControlSocket), Is.False, "the control socket is removed on a clean stop");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    [Test]
    public async Task Under_systemd_the_host_reports_ready_once_the_node_is_announced_and_logs_for_journald()
    {
        Prerequisites.RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Public, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-notify-");
        var hosts = new List<HostProcess>();
        // systemd's notify socket (sd_notify(3)): one datagram per state change, "READY=1", "STOPPING=1".
        var notifyPath = Path.Combine(work.FullName, "notify");
        using var notify = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Unspecified);
        notify.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(notifyPath));
        try
        {
            hosts.Add(HostProcess.Start(lab, 0, work.FullName, notifySocket: notifyPath));
            var buffer = new byte[4096];
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var ready = System.Text.Encoding.UTF8.GetString(buffer, 0, await notify.ReceiveAsync(buffer, wait.Token));
            Assert.That(ready, Does.Contain("READY=1"));
            // Ready means announced: signaling is connected, and the node is there to be asked.
            Assert.That(hosts[0].Tail(), Does.Contain("connected to XMPP"), "READY=1 comes after the node is connected to signaling");
            Assert.That(hosts[0].Tail(), Does.Match(@"(?m)^<6>Overlay\."), "log lines carry journald's priority prefix (<6> = info)");

            var stopping = notify.ReceiveAsync(buffer, wait.Token).AsTask();
            await hosts[0].StopAsync();
            Assert.That(System.Text.Encoding.UTF8.GetString(buffer, 0, await stopping), Does.Contain("STOPPING=1"));
            Assert.That(hosts[0].ExitCode, Is.EqualTo(0), hosts[0].Tail());
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    [Test]
    public async Task A_host_whose_password_the_server_refuses_exits_5()
    {
        Prerequisites.RequireLab();
        await using var lab = await NatLab.StartAsync([NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-auth-");
        var host = HostProcess.Start(lab, 0, work.FullName, password: "not-the-password");
        try
        {
            Assert.That(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo(5), host.Tail());
            Assert.That(host.Tail(), Does.Contain("signaling refused this node"));
        }
        finally
        {
            await host.StopAsync();
            work.Delete(recursive: true);
        }
    }
}
