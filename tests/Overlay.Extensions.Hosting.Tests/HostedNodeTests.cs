using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.NetworkInformation;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.InProcess;
using Overlay.Tap.InMemory;
using Overlay.TestSupport.Lab;

namespace Overlay.Extensions.Hosting.Tests;

/// <summary>
/// Nodes run by the Generic Host as an application registers them: configuration from a section, the host's logging,
/// meter factory and health checks, real links on this machine (ICE host candidates, DTLS, AES-GCM) between two hosts
/// that signal through one in-process hub.
/// </summary>
public class HostedNodeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Test]
    public async Task Two_hosted_nodes_link_and_report_health_metrics_and_setup_spans()
    {
        var overlayId = "hosting-" + Guid.NewGuid().ToString("N")[..8];
        var hub = new InProcessSignalingHub();
        // B runs on a device the application made itself (a bridge or a batching device would do the same).
        var ownDevice = new InMemoryEthernetDevice("own-b", PhysicalAddress.Parse("02-00-00-00-0b-01"));
        using var a = BuildHost(overlayId, 1, hub);
        using var b = BuildHost(overlayId, 2, hub, o => o.WithDevice(ownDevice));
        var nodeA = a.Services.GetRequiredService<OverlayNode>();
        var nodeB = b.Services.GetRequiredService<OverlayNode>();
        var factoryA = a.Services.GetRequiredService<IMeterFactory>();

        using var metrics = new Measurements(instrument => instrument.Meter.Name == OverlayNode.MeterName && instrument.Meter.Scope == factoryA);
        var spans = new ConcurrentQueue<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = source => source.Name == OverlayNode.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (Equals(activity.GetTagItem("overlay.id"), overlayId)) spans.Enqueue(activity);
            },
        };
        ActivitySource.AddActivityListener(activities);
        var upA = LinkUp(nodeA);
        var upB = LinkUp(nodeB);
        var roundTrip = metrics.First("overlay.link.rtt");

        using var cts = new CancellationTokenSource(Timeout);
        await a.StartAsync(cts.Token);
        await b.StartAsync(cts.Token);
        await nodeA.WaitUntilReadyAsync(cts.Token);
        await nodeB.WaitUntilReadyAsync(cts.Token);
        var linkA = await upA.WaitAsync(cts.Token);
        var linkB = await upB.WaitAsync(cts.Token);

        Assert.That(nodeB.GetOverlay(overlayId).Device, Is.SameAs(ownDevice), "the application's device is the overlay's NIC");
        await using var hostA = new InMemoryIpHost((InMemoryEthernetDevice)nodeA.GetOverlay(overlayId).Device, IPAddress.Parse("10.30.0.1"));
        await using var hostB = new InMemoryIpHost(ownDevice, IPAddress.Parse("10.30.0.2"));
        await hostA.PingAsync(IPAddress.Parse("10.30.0.2"), Timeout, cts.Token);

        var health = await a.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(cts.Token);
        Assert.That(health.Status, Is.EqualTo(HealthStatus.Healthy), health.Entries["overlay"].Description);
        Assert.That(health.Entries["overlay"].Data[$"{overlayId}.links_up"], Is.EqualTo(1));

        await roundTrip.WaitAsync(cts.Token); // keepalives every 0.2 s (Links:KeepaliveInterval)
        metrics.Collect();
        var tags = new Dictionary<string, object?> { ["overlay.id"] = overlayId };
        Assert.That(metrics.Last("overlay.links.up", tags, ("overlay.path.type", "host")), Is.EqualTo(1), "one link, over a host pair");
        Assert.That(metrics.All("overlay.link.setup.duration").Single(m => Equals(m.Tags["overlay.id"], overlayId)).Value,
            Is.EqualTo(linkA.Elapsed.TotalSeconds).Within(1e-9), "the setup time the link event reported, in seconds");
        Assert.That(metrics.Sum("overlay.ice.outcomes", tags, ("overlay.ice.outcome", "succeeded")), Is.EqualTo(1));
        Assert.That(metrics.Last("overlay.frames", tags, ("network.io.direction", "transmit")), Is.GreaterThanOrEqualTo(2), "ARP and the ping, out");
        Assert.That(metrics.Last("overlay.frames", tags, ("network.io.direction", "receive")), Is.GreaterThanOrEqualTo(2), "their answers, in");
        Assert.That(metrics.Last("overlay.bytes", tags, ("network.io.direction", "transmit")),
            Is.GreaterThanOrEqualTo(42 * metrics.Last("overlay.frames", tags, ("network.io.direction", "transmit"))!.Value), "an ARP frame, the smallest here, is 42 bytes unpadded");
        Assert.That(metrics.Last("overlay.switch.floods", tags), Is.GreaterThanOrEqualTo(1), "the ARP request was flooded");
        Assert.That(metrics.Last("overlay.switch.flood.copies", tags), Is.GreaterThanOrEqualTo(1), "a copy of it went over the link");
        Assert.That(metrics.Last("overlay.switch.unknown_unicast_floods", tags), Is.Zero, "the ARP answer and the ping followed the ways the request taught");
        Assert.That(metrics.Last("overlay.switch.announcements", tags), Is.Zero, "no frame for the host was flooded");
        Assert.That(metrics.Last("overlay.switch.flood.gap_copies", tags), Is.Zero, "two members linked to each other: no ring gap");
        Assert.That(metrics.Last("overlay.switch.path_loops_broken", tags), Is.Zero, "one link: no way can lead back where a frame came from");
        Assert.That(metrics.Last("overlay.switch.not_learned", tags), Is.Zero, "the address table is far from full");
        Assert.That(metrics.Last("overlay.switch.learned", tags), Is.EqualTo((await nodeA.GetOverlay(overlayId).GetStatusAsync()).LearnedAddresses));
        Assert.That(metrics.Last("overlay.frames.dropped", tags, ("overlay.drop.reason", "duplicate")), Is.Zero);
        Assert.That(metrics.Last("overlay.signaling.state", new Dictionary<string, object?>(), ("overlay.signaling.state", "connected")), Is.EqualTo(1));
        Assert.That(metrics.Last("overlay.signaling.messages", new Dictionary<string, object?>(), ("overlay.signaling.outcome", "accepted")), Is.GreaterThanOrEqualTo(1),
            "the peer's offer, or the answer to A's own, at least (an offer asks for its edge itself: there is no edge request)");
        Assert.That(metrics.Last("overlay.signaling.messages", new Dictionary<string, object?>(), ("overlay.signaling.drop.reason", "malformed")), Is.Zero);
        Assert.That(metrics.Last("overlay.signaling.reconnects", new Dictionary<string, object?>()), Is.Zero);
        Assert.That(metrics.All("overlay.link.rtt").First().Value, Is.GreaterThan(0).And.LessThan(1));

        // Both nodes may ask for the link at once; the request that loses is abandoned, and its span ends without success.
        var setup = spans.Where(s => s.DisplayName == "overlay.link.setup" && s.Status == ActivityStatusCode.Ok).ToArray();
        Assert.That(setup.Select(s => s.GetTagItem("overlay.link.id")).Distinct().Count(), Is.EqualTo(1), "one link");
        Assert.That(setup, Has.Length.EqualTo(2), "its span on each side");
        var initiator = setup.Single(s => Equals(s.GetTagItem("overlay.link.initiator"), true));
        Assert.That(initiator.Events.Select(e => e.Name), Is.EqualTo(new[] { "offer.answered", "ice.selected", "dtls.authenticated" }));
        Assert.That(setup.Select(s => s.GetTagItem("overlay.path.type")), Is.All.EqualTo("host"));
        // The span and the initiator's link event both start when it asked for the link (the acceptor's when the offer came).
        var initiated = Equals(initiator.GetTagItem("overlay.peer.id"), nodeB.NodeId) ? linkA : linkB;
        Assert.That(initiator.Duration.TotalSeconds, Is.GreaterThanOrEqualTo(initiated.Elapsed.TotalSeconds - 0.1).And.LessThanOrEqualTo(initiated.Elapsed.TotalSeconds + 1));

        // B stops: it says goodbye over the link, and A sees the link close at once.
        var closed = LinkChanged(nodeA, LinkChange.Closed);
        await b.StopAsync(cts.Token);
        await closed.WaitAsync(cts.Token);
        metrics.Collect();
        Assert.That(metrics.Last("overlay.links.up", tags, ("overlay.path.type", "host")), Is.Null, "no link up is no measurement");
        await Assert.ThrowsAsync<ObjectDisposedException>(() => nodeB.WaitUntilReadyAsync(cts.Token));

        await a.StopAsync(cts.Token);
        health = await a.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(cts.Token);
        Assert.That(health.Status, Is.EqualTo(HealthStatus.Unhealthy), "a stopped node");
    }

    /// <summary>
    /// Presence is advisory: while the signaling server is away the link goes on carrying traffic and the health check
    /// says Degraded, not Unhealthy; when it is back, Healthy. With signaling away and no link left, Unhealthy. Against a
    /// real prosody, stopped and started again as an operator would.
    /// </summary>
    [Test]
    public async Task Health_is_degraded_while_signaling_is_away_and_the_link_goes_on()
    {
        await using var prosody = await ProsodyServer.StartAsync();
        using var a = BuildXmppHost(prosody, 0);
        using var b = BuildXmppHost(prosody, 1);
        var nodeA = a.Services.GetRequiredService<OverlayNode>();
        var nodeB = b.Services.GetRequiredService<OverlayNode>();
        var health = a.Services.GetRequiredService<HealthCheckService>();
        var upA = LinkUp(nodeA);
        var upB = LinkUp(nodeB);
        using var cts = new CancellationTokenSource(Timeout);
        await a.StartAsync(cts.Token);
        await b.StartAsync(cts.Token);
        await Task.WhenAll(upA, upB).WaitAsync(cts.Token);
        await using var hostA = new InMemoryIpHost((InMemoryEthernetDevice)nodeA.GetOverlay("ovl1").Device, IPAddress.Parse("10.31.0.1"));
        await using var hostB = new InMemoryIpHost((InMemoryEthernetDevice)nodeB.GetOverlay("ovl1").Device, IPAddress.Parse("10.31.0.2"));
        await hostA.PingAsync(IPAddress.Parse("10.31.0.2"), Timeout, cts.Token);
        var report = await health.CheckHealthAsync(cts.Token);
        Assert.That(report.Status, Is.EqualTo(HealthStatus.Healthy), report.Entries["overlay"].Description);

        var lost = SignalingChanged(nodeA, SignalingState.Reconnecting);
        var linkChanges = new ConcurrentQueue<LinkEvent>();
        nodeA.LinkChanged += (_, e) => linkChanges.Enqueue(e);
        await prosody.StopAsync();
        TestContext.Out.WriteLine($"signaling lost: {(await lost.WaitAsync(cts.Token)).Reason}");
        report = await health.CheckHealthAsync(cts.Token);
        Assert.That(report.Status, Is.EqualTo(HealthStatus.Degraded), report.Entries["overlay"].Description);
        Assert.That(report.Entries["overlay"].Description, Does.Contain("1 link(s) still up"));
        await hostA.PingAsync(IPAddress.Parse("10.31.0.2"), Timeout, cts.Token);

        var back = SignalingChanged(nodeA, SignalingState.Connected);
        await prosody.StartAgainAsync(cts.Token);
        await back.WaitAsync(cts.Token);
        report = await health.CheckHealthAsync(cts.Token);
        Assert.That(report.Status, Is.EqualTo(HealthStatus.Healthy), report.Entries["overlay"].Description);
        Assert.That(linkChanges, Is.Empty, "the link saw neither the outage nor the return");

        // Signaling away again, and the peer stops (it says goodbye over the link): nothing is left.
        lost = SignalingChanged(nodeA, SignalingState.Reconnecting);
        await prosody.StopAsync();
        await lost.WaitAsync(cts.Token);
        var closed = LinkChanged(nodeA, LinkChange.Closed);
        await b.StopAsync(cts.Token);
        await closed.WaitAsync(cts.Token);
        report = await health.CheckHealthAsync(cts.Token);
        Assert.That(report.Status, Is.EqualTo(HealthStatus.Unhealthy), report.Entries["overlay"].Description);
        Assert.That(report.Entries["overlay"].Description, Does.Contain("no link up"));
        await a.StopAsync(cts.Token);
    }

    [TestCase("Overlay:Overlays:ovl:NetDevice:MTU", "100", "Overlays.ovl.NetDevice.MTU")]
    [TestCase("Overlay:Overlays:ovl:NetDevice:Offload", "maybe", "Overlays.ovl.NetDevice.Offload")]
    [TestCase("Overlay:Stunn:0", "stun.example.org:3478", "Stunn")]
    public async Task A_bad_setting_stops_the_host_at_start_naming_the_key(string key, string value, string named)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Overlay:Overlays:ovl:MinSuccessors"] = "2", [key] = value });
        builder.Services.AddOverlayNode(builder.Configuration.GetSection("Overlay"));
        using var host = builder.Build();

        var e = (await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync()))!;

        Assert.That(e.Message, Does.Contain(named).And.Contain("section 'Overlay'"));
    }

    [Test]
    public async Task Code_may_describe_the_node_alone()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddOverlayNode(o => o.UseInProcessSignaling(new InProcessSignalingHub()).JoinOverlay("solo"));
        using var host = builder.Build();
        using var cts = new CancellationTokenSource(Timeout);

        await host.StartAsync(cts.Token);
        var node = host.Services.GetRequiredService<OverlayNode>();
        await node.WaitUntilReadyAsync(cts.Token);
        Assert.That(node.Overlays.Select(o => o.Id), Is.EqualTo(new[] { "solo" }));
        await host.StopAsync(cts.Token);
    }

    private static IHost BuildHost(string overlayId, int index, InProcessSignalingHub hub, Action<OverlayBuilder>? device = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            [$"Overlay:Overlays:{overlayId}:NetDevice:IP4"] = $"10.30.0.{index}",
            ["Overlay:Links:KeepaliveInterval"] = "0.2",
            ["Overlay:Links:DeadPeerTimeout"] = "5",
        });
        builder.Services.AddMetrics();
        builder.Services.AddOverlayNode(builder.Configuration.GetSection("Overlay"), o =>
        {
            o.UseInProcessSignaling(hub);
            if (device is not null) o.ConfigureOverlay(overlayId, device);
        });
        builder.Services.AddHealthChecks().AddOverlayNode();
        return builder.Build();
    }

    /// <summary>A node signaling through <paramref name="prosody"/> as one of its group's accounts, on overlay ovl1.</summary>
    private static IHost BuildXmppHost(ProsodyServer prosody, int index)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Overlay:Signal:HostAddress"] = prosody.EndPoint.Address.ToString(),
            ["Overlay:Signal:Port"] = prosody.EndPoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Overlay:Signal:Username"] = $"{ProsodyServer.GroupMembers[index]}@{prosody.Domain}",
            ["Overlay:Signal:Password"] = ProsodyServer.Password,
            ["Overlay:Signal:CaFile"] = prosody.CaCertificatePath,
            ["Overlay:Signal:ReconnectMinDelay"] = "0.2", // back soon after prosody is
            ["Overlay:Signal:ReconnectMaxDelay"] = "0.5",
            ["Overlay:Overlays:ovl1:NetDevice:IP4"] = $"10.31.0.{index + 1}",
            ["Overlay:Links:KeepaliveInterval"] = "0.2",
            ["Overlay:Links:DeadPeerTimeout"] = "5",
        });
        builder.Services.AddOverlayNode(builder.Configuration.GetSection("Overlay"));
        builder.Services.AddHealthChecks().AddOverlayNode();
        return builder.Build();
    }

    private static Task<SignalingEvent> SignalingChanged(OverlayNode node, SignalingState state)
    {
        var done = new TaskCompletionSource<SignalingEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        node.SignalingChanged += (_, e) =>
        {
            if (e.State == state) done.TrySetResult(e);
        };
        return done.Task;
    }

    private static Task<LinkEvent> LinkUp(OverlayNode node) => LinkChanged(node, LinkChange.Up);

    private static Task<LinkEvent> LinkChanged(OverlayNode node, LinkChange change)
    {
        var done = new TaskCompletionSource<LinkEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        node.LinkChanged += (_, e) =>
        {
            if (e.Change == change) done.TrySetResult(e);
        };
        return done.Task;
    }

    /// <summary>Every measurement of the selected instruments, with its tags; observable ones when <see cref="Collect"/> runs.</summary>
    private sealed class Measurements : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Lock _gate = new();
        private readonly List<(string Name, bool Observable, double Value, Dictionary<string, object?> Tags)> _all = [];
        private readonly ConcurrentDictionary<string, TaskCompletionSource> _first = new();

        public Measurements(Func<Instrument, bool> select)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (select(instrument)) listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<int>((i, v, t, _) => Add(i, v, t));
            _listener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i, v, t));
            _listener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i, v, t));
            _listener.Start();
        }

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var measurement = (instrument.Name, instrument.IsObservable, value, new Dictionary<string, object?>(tags.ToArray()));
            lock (_gate) _all.Add(measurement);
            if (_first.TryGetValue(instrument.Name, out var first)) first.TrySetResult();
        }

        /// <summary>Completes at the instrument's first measurement from now on.</summary>
        public Task First(string name) => _first.GetOrAdd(name, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <summary>Reads the observable instruments now, in place of what they reported before.</summary>
        public void Collect()
        {
            lock (_gate) _all.RemoveAll(m => m.Observable);
            _listener.RecordObservableInstruments();
        }

        public (double Value, Dictionary<string, object?> Tags)[] All(string name)
        {
            lock (_gate) return [.. _all.Where(m => m.Name == name).Select(m => (m.Value, m.Tags))];
        }

        private IEnumerable<double> Matching(string name, IReadOnlyDictionary<string, object?> tags, (string Key, string Value)? tag) =>
            All(name).Where(m => tags.All(t => Equals(m.Tags.GetValueOrDefault(t.Key), t.Value))
                && (tag is not { } x || Equals(m.Tags.GetValueOrDefault(x.Key), x.Value))).Select(m => m.Value);

        public double? Last(string name, IReadOnlyDictionary<string, object?> tags, (string Key, string Value)? tag = null) =>
            Matching(name, tags, tag).Select(v => (double?)v).LastOrDefault();

        public double Sum(string name, IReadOnlyDictionary<string, object?> tags, (string Key, string Value)? tag = null) => Matching(name, tags, tag).Sum();

        public void Dispose() => _listener.Dispose();
    }
}
