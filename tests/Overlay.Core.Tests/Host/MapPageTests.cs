using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NUnit.Framework;
using Overlay.Host;
using Overlay.Host.Map;
using Overlay.Signaling.InProcess;
using Overlay.TestSupport.Browser;

namespace Overlay.Core.Tests.Host;

/// <summary>
/// The host's live map in a real browser (Debian's headless Chromium), fed by real nodes of this process: the page
/// draws what the node's status says and follows it as it changes, without a reload. The four-host run behind NATs is
/// in <see cref="Node.HostNatLabTests"/>.
/// </summary>
[NonParallelizable]
public sealed class MapPageTests
{
    [Test]
    public async Task The_page_draws_the_nodes_links_and_follows_a_new_link_live()
    {
        var hub = new InProcessSignalingHub();
        var nodes = new List<OverlayNode>();
        OverlayNode NewNode(int i) => OverlayNode.Create().UseInProcessSignaling(hub)
            .JoinOverlay("map", o => o.WithInMemoryDevice().WithAddress($"10.30.0.{i + 1}/24")).Build();
        var first = NewNode(0);
        nodes.Add(first);
        var service = new NodeMonitor(first, new RunOptions("-", LogLevel.Information, TimeSpan.Zero, null, "-", null), NullLogger<NodeMonitor>.Instance);
        var map = new MapServer(new IPEndPoint(IPAddress.Loopback, 0), service, NullLoggerFactory.Instance);
        try
        {
            await first.StartAsync();
            await service.StartAsync(CancellationToken.None);
            nodes.Add(NewNode(1));
            await nodes[1].StartAsync();
            await map.StartAsync(CancellationToken.None);

            await using var browser = await HeadlessChromium.StartAsync();
            await browser.OpenAsync(map.Address!);
            await browser.WaitForAsync("document.body.dataset.up === '1'", TimeSpan.FromSeconds(30));
            Assert.That((string?)await browser.EvaluateAsync("document.body.dataset.nodes"), Is.EqualTo("2"));
            Assert.That((int?)await browser.EvaluateAsync("document.querySelectorAll('#ring path.link').length"), Is.EqualTo(1), "one link drawn");
            Assert.That((int?)await browser.EvaluateAsync("document.querySelectorAll('#links tr').length"), Is.EqualTo(1), "one row in the table");
            Assert.That((string?)await browser.EvaluateAsync("document.querySelector('#ring path.link').dataset.type"), Is.EqualTo("host"), "a link on this machine is a host path");
            Assert.That((string?)await browser.EvaluateAsync("document.querySelector('#ring path.link title').textContent"), Does.Match(@"RTT (\d+\.\d\d ms|not measured yet)"),
                "hovering a link shows its RTT");

            // A third member: the open page follows (server-sent events), no reload.
            nodes.Add(NewNode(2));
            await nodes[2].StartAsync();
            await browser.WaitForAsync("document.body.dataset.up === '2' && document.body.dataset.nodes === '3'", TimeSpan.FromSeconds(30));
            Assert.That((string?)await browser.EvaluateAsync("document.getElementById('self').textContent"), Is.EqualTo(first.NodeId));
            var shot = Path.Combine(TestContext.CurrentContext.WorkDirectory, "map-in-process.png");
            await browser.ScreenshotAsync(shot);
            TestContext.AddTestAttachment(shot, "the map of one node with two peers");
            Assert.That(new FileInfo(shot).Length, Is.GreaterThan(10_000), "a screenshot with something drawn on it");
        }
        finally
        {
            await map.StopAsync(CancellationToken.None);
            await service.StopAsync(CancellationToken.None);
            service.Dispose();
            foreach (var node in nodes) await node.DisposeAsync();
        }
    }

    [Test]
    public async Task A_request_naming_another_host_is_refused_so_a_rebound_dns_name_cannot_read_the_status()
    {
        var node = OverlayNode.Create().UseInProcessSignaling(new InProcessSignalingHub())
            .JoinOverlay("map", o => o.WithInMemoryDevice().WithAddress("10.31.0.1/24")).Build();
        var service = new NodeMonitor(node, new RunOptions("-", LogLevel.Information, TimeSpan.Zero, null, "-", null), NullLogger<NodeMonitor>.Instance);
        var map = new MapServer(new IPEndPoint(IPAddress.Loopback, 0), service, NullLoggerFactory.Instance);
        try
        {
            await node.StartAsync();
            await service.StartAsync(CancellationToken.None);
            await map.StartAsync(CancellationToken.None);
            using var http = new HttpClient();
            using var own = await http.GetAsync(new Uri(map.Address!, "status"));
            Assert.That(own.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(await own.Content.ReadAsStringAsync(), Does.Contain(node.NodeId));
            using var rebound = new HttpRequestMessage(HttpMethod.Get, new Uri(map.Address!, "status"));
            rebound.Headers.Host = $"attacker.example:{map.Address!.Port}";
            using var refused = await http.SendAsync(rebound);
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.MisdirectedRequest));
        }
        finally
        {
            await map.StopAsync(CancellationToken.None);
            await service.StopAsync(CancellationToken.None);
            service.Dispose();
            await node.DisposeAsync();
        }
    }
}
