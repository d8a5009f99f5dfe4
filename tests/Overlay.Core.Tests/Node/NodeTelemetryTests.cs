using System.Diagnostics.Metrics;
using System.Net;
using NUnit.Framework;
using Overlay.Nat.Ice;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// The link instruments from the events a node raises, read with a <see cref="MeterListener"/>: setup time and ICE
/// outcome once per new link, recovery time (not a second setup) for a link that fell silent and came back, links up by
/// path type, round trips; the histograms' buckets in seconds. What the data path counts (frames, bytes, drops, switch)
/// is read from real nodes in HostedNodeTests and from a real host in HostTelemetryLabTests.
/// </summary>
public sealed class NodeTelemetryTests
{
    private static readonly IPEndPoint Here = new(IPAddress.Parse("192.0.2.1"), 5000), There = new(IPAddress.Parse("192.0.2.2"), 5000);
    private static readonly LinkPath Host = new(IceCandidateType.Host, Here, IceCandidateType.Host, There);
    private static readonly LinkPath Reflexive = new(IceCandidateType.ServerReflexive, Here, IceCandidateType.Host, There);
    private static readonly LinkPath Relay = new(IceCandidateType.Relayed, Here, IceCandidateType.Host, There);

    [Test]
    public void Link_events_give_setup_and_recovery_times_ice_outcomes_links_up_by_path_type_and_round_trips()
    {
        var nodeId = Guid.NewGuid().ToString("N");
        var measured = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        var advice = new Dictionary<string, IReadOnlyList<double>?>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name != OverlayNode.MeterName || !instrument.Meter.Tags!.Contains(new("overlay.node.id", nodeId))) return;
                if (instrument is Histogram<double> histogram) advice[instrument.Name] = histogram.Advice?.HistogramBucketBoundaries;
                l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => measured.Add((i.Name, v, new(t.ToArray()))));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => measured.Add((i.Name, v, new(t.ToArray()))));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => measured.Add((i.Name, v, new(t.ToArray()))));
        listener.Start();
        using var telemetry = new NodeTelemetry(nodeId, meterFactory: null, () => [], () => null);

        LinkEvent Event(string link, LinkChange change, LinkPath? path = null, double seconds = 0) =>
            new("ovl", "peer-" + link, link, change, path, "", TimeSpan.FromSeconds(seconds));
        telemetry.OnLinkEvent(Event("a", LinkChange.Up, Host, 1.5));
        telemetry.OnLinkEvent(Event("b", LinkChange.Up, Relay, 3));
        telemetry.OnLinkEvent(Event("a", LinkChange.Down));
        telemetry.OnLinkEvent(Event("a", LinkChange.Up, Reflexive, 2)); // back up, over another pair: a recovery
        telemetry.OnLinkEvent(Event("c", LinkChange.Failed));            // never came up: ICE failed
        telemetry.OnLinkEvent(Event("d", LinkChange.Up, Host, 0.5));
        telemetry.OnLinkEvent(Event("d", LinkChange.Down));
        telemetry.OnLinkEvent(Event("d", LinkChange.Failed));            // was up, did not recover: not an ICE failure of a setup
        telemetry.OnRoundTrip("ovl", TimeSpan.FromMilliseconds(12));
        listener.RecordObservableInstruments();

        double[] Values(string name, params (string Key, string Value)[] tags) =>
            [.. measured.Where(m => m.Name == name && tags.All(t => Equals(m.Tags.GetValueOrDefault(t.Key), t.Value))).Select(m => m.Value)];
        Assert.Multiple(() =>
        {
            Assert.That(Values("overlay.link.setup.duration", ("overlay.path.type", "host")), Is.EqualTo(new[] { 1.5, 0.5 }), "new links only, in seconds");
            Assert.That(Values("overlay.link.setup.duration", ("overlay.path.type", "relay")), Is.EqualTo(new[] { 3.0 }));
            Assert.That(Values("overlay.link.recovery.duration"), Is.EqualTo(new[] { 2.0 }));
            Assert.That(Values("overlay.link.recovery.duration", ("overlay.path.type", "srflx"), ("overlay.id", "ovl")), Has.Length.EqualTo(1));
            Assert.That(Values("overlay.ice.outcomes", ("overlay.ice.outcome", "succeeded")).Sum(), Is.EqualTo(3));
            Assert.That(Values("overlay.ice.outcomes", ("overlay.ice.outcome", "failed")).Sum(), Is.EqualTo(1));
            Assert.That(Values("overlay.links.up", ("overlay.path.type", "srflx")), Is.EqualTo(new[] { 1.0 }), "link a, now over the reflexive pair");
            Assert.That(Values("overlay.links.up", ("overlay.path.type", "relay")), Is.EqualTo(new[] { 1.0 }));
            Assert.That(Values("overlay.links.up", ("overlay.path.type", "host")), Is.Empty, "a host link that failed is not up");
            Assert.That(Values("overlay.link.rtt", ("overlay.id", "ovl")), Is.EqualTo(new[] { 0.012 }).Within(1e-12));
            Assert.That(Values("overlay.signaling.state", ("overlay.signaling.state", "disconnected")), Is.EqualTo(new[] { 1.0 }), "no signaling yet");
            Assert.That(advice["overlay.link.rtt"], Does.Contain(0.001), "round-trip buckets in seconds");
            Assert.That(advice["overlay.link.setup.duration"], Does.Contain(1.0).And.Contain(10.0));
            Assert.That(advice["overlay.link.recovery.duration"], Is.Not.Null);
        });

        measured.Clear();
        telemetry.OnLinkEvent(Event("a", LinkChange.Closed));
        listener.RecordObservableInstruments();
        Assert.That(Values("overlay.links.up", ("overlay.path.type", "srflx")), Is.Empty, "a closed link is no longer up");
    }

    /// <summary>What the observable instruments of node <paramref name="nodeId"/>'s meter report now.</summary>
    internal static List<(string Name, double Value, Dictionary<string, object?> Tags)> Observe(string nodeId)
    {
        var measured = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == OverlayNode.MeterName && instrument.IsObservable && instrument.Meter.Tags!.Contains(new("overlay.node.id", nodeId)))
                    l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => measured.Add((i.Name, v, new(t.ToArray()))));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => measured.Add((i.Name, v, new(t.ToArray()))));
        listener.Start();
        listener.RecordObservableInstruments();
        return measured;
    }
}
