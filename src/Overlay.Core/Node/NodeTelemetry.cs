using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Overlay.Nat.Ice;
using Overlay.Signaling;

namespace Overlay;

/// <summary>
/// A node's instruments (meter <see cref="OverlayNode.MeterName"/>) and its link-setup spans (activity source
/// <see cref="OverlayNode.ActivitySourceName"/>). Created per node, through the application's
/// <see cref="IMeterFactory"/> when it gives one; nothing here is static. Counters the data path already keeps (devices,
/// switches) are read by observable instruments when a listener collects, so the data path does no extra work; the rest
/// is recorded from link events and keepalive echoes on the control path. The names and units are listed in README
/// "Metrics".
/// </summary>
internal sealed class NodeTelemetry : IDisposable
{
    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly ActivitySource _activities;
    private readonly Func<IReadOnlyList<OverlayNetwork>> _overlays;
    private readonly Func<SignalingChannelBase?> _signaling;
    private readonly Histogram<double> _setup, _recovery, _roundTrip;
    private readonly Counter<long> _iceOutcomes;

    /// <summary>Setup and recovery times: from a LAN's tenth of a second to a minute of retries.</summary>
    internal static readonly double[] SetupBuckets = [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60];

    /// <summary>Round trips: from a LAN's half millisecond to seconds over a congested relay.</summary>
    internal static readonly double[] RoundTripBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    /// <summary>Links up, by overlay and link ID, with their path type; and the links that went down (their next up is a recovery).</summary>
    private readonly ConcurrentDictionary<(string Overlay, string Link), string> _up = new();
    private readonly ConcurrentDictionary<(string Overlay, string Link), byte> _down = new();
    private volatile bool _disposed;

    public NodeTelemetry(string nodeId, IMeterFactory? meterFactory, Func<IReadOnlyList<OverlayNetwork>> overlays, Func<SignalingChannelBase?> signaling)
    {
        _overlays = overlays;
        _signaling = signaling;
        var tags = new[] { new KeyValuePair<string, object?>("overlay.node.id", nodeId) };
        var options = new MeterOptions(OverlayNode.MeterName) { Tags = tags };
        _ownsMeter = meterFactory is null;
        _meter = meterFactory?.Create(options) ?? new Meter(options);
        _activities = new ActivitySource(OverlayNode.ActivitySourceName);

        _meter.CreateObservableUpDownCounter("overlay.links.up", ObserveLinksUp, "{link}", "Links up, by overlay and path type (host, srflx, relay)");
        // Bucket boundaries in seconds, as advice to exporters: their defaults (0, 5, 10, 25 ... 10000) are made for
        // milliseconds, and would put every round trip and most setups into the first bucket.
        _setup = _meter.CreateHistogram("overlay.link.setup.duration", "s", "Time from a link's first signal to authenticated and up (edge request, ICE, DTLS)",
            tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = SetupBuckets });
        _recovery = _meter.CreateHistogram("overlay.link.recovery.duration", "s", "Time a link that fell silent took to come back up",
            tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = SetupBuckets });
        _roundTrip = _meter.CreateHistogram("overlay.link.rtt", "s", "Round trips measured by link keepalives",
            tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = RoundTripBuckets });
        _iceOutcomes = _meter.CreateCounter<long>("overlay.ice.outcomes", "{link}", "Link setups by outcome (succeeded with a path type, or failed)");

        _meter.CreateObservableCounter("overlay.frames", () => ObserveDevice(c => c.FramesRead, c => c.FramesWritten), "{frame}",
            "Frames between the overlay's NIC and the overlay: transmit = read from the NIC and sent, receive = written to it");
        _meter.CreateObservableCounter("overlay.bytes", () => ObserveDevice(c => c.BytesRead, c => c.BytesWritten), "By",
            "Bytes of those frames");
        _meter.CreateObservableCounter("overlay.frames.dropped", ObserveDrops, "{frame}", "Frames dropped, by overlay and reason");
        _meter.CreateObservableCounter("overlay.switch.floods", () => ObserveSwitch(s => s.FloodsOriginated), "{flood}", "Broadcasts and unknown unicasts this node's switch flooded");
        _meter.CreateObservableCounter("overlay.switch.unknown_unicast_floods", () => ObserveSwitch(s => s.UnknownUnicastFloods), "{flood}",
            "Of those floods, unicast frames this node's switch knew no way for (a conversation's first frames, or a way that was lost)");
        _meter.CreateObservableCounter("overlay.switch.announcements", () => ObserveSwitch(s => s.Announcements), "{frame}",
            "Broadcasts in the local host's name after another switch flooded a frame for it (that switch had lost the way)");
        _meter.CreateObservableCounter("overlay.switch.flood.copies", () => ObserveSwitch(s => s.FloodCopiesSent), "{frame}", "Flood copies sent on links (originated or forwarded)");
        _meter.CreateObservableCounter("overlay.switch.flood.gap_copies", () => ObserveSwitch(s => s.GapCopies), "{frame}",
            "Of those copies, ones sent around a missing ring link (a ring neighbour no link could reach)");
        _meter.CreateObservableCounter("overlay.switch.path_loops_broken", () => ObserveSwitch(s => s.PathLoopsBroken), "{frame}",
            "Frames from the neighbour their way led back to: the way was forgotten and the frame flooded");
        _meter.CreateObservableCounter("overlay.switch.not_learned", () => ObserveSwitch(s => s.NotLearned), "{frame}",
            "Frames whose address or path went unlearned because the switch's table was full");
        _meter.CreateObservableUpDownCounter("overlay.switch.learned", ObserveLearned, "{address}", "MAC addresses the switch has learned");
        _meter.CreateObservableGauge("overlay.signaling.state", ObserveSignalingState, "{state}",
            "1 for the signaling connection's current state (disconnected, connecting, connected, reconnecting, closed), 0 for the others");
        _meter.CreateObservableCounter("overlay.signaling.reconnects", () => (_signaling() as Signaling.Xmpp.XmppSignalingChannel)?.Reconnections ?? 0,
            "{reconnect}", "Signaling reconnections after a lost connection");
        _meter.CreateObservableCounter("overlay.signaling.messages", ObserveSignalingMessages, "{message}",
            "Inbound signaling messages: accepted, or dropped by reason");
    }

    /// <summary>Starts a link's setup span (not made current: the control path goes on with other links).</summary>
    public Activity? StartSetup(string overlayId, string peerNodeId, string linkId, bool initiator)
    {
        if (!_activities.HasListeners()) return null;
        var previous = Activity.Current;
        var activity = _activities.CreateActivity("overlay.link.setup", ActivityKind.Internal, parentContext: default,
            [new("overlay.id", overlayId), new("overlay.peer.id", peerNodeId), new("overlay.link.id", linkId), new("overlay.link.initiator", initiator)]);
        activity?.Start();
        Activity.Current = previous;
        return activity;
    }

    /// <summary>A link changed (from the overlay's control thread).</summary>
    public void OnLinkEvent(LinkEvent e)
    {
        var key = (e.OverlayId, e.LinkId);
        var overlay = new KeyValuePair<string, object?>("overlay.id", e.OverlayId);
        switch (e.Change)
        {
            case LinkChange.Up:
                var type = PathType(e.Path);
                _up[key] = type;
                var path = new KeyValuePair<string, object?>("overlay.path.type", type);
                if (_down.TryRemove(key, out _))
                {
                    _recovery.Record(e.Elapsed.TotalSeconds, overlay, path);
                }
                else
                {
                    _setup.Record(e.Elapsed.TotalSeconds, overlay, path);
                    _iceOutcomes.Add(1, overlay, new("overlay.ice.outcome", "succeeded"), path);
                }
                break;
            case LinkChange.Down:
                _up.TryRemove(key, out _);
                _down[key] = 0;
                break;
            case LinkChange.Failed:
                _up.TryRemove(key, out _);
                if (!_down.TryRemove(key, out _)) _iceOutcomes.Add(1, overlay, new("overlay.ice.outcome", "failed"));
                break;
            case LinkChange.Closed:
                _up.TryRemove(key, out _);
                _down.TryRemove(key, out _);
                break;
        }
    }

    /// <summary>A keepalive echo measured a link's round trip (on the link's receive thread, every keepalive interval).</summary>
    public void OnRoundTrip(string overlayId, TimeSpan roundTrip) =>
        _roundTrip.Record(roundTrip.TotalSeconds, new KeyValuePair<string, object?>("overlay.id", overlayId));

    /// <summary>host, srflx (server- or peer-reflexive on either side) or relay (either side relayed), as ICE names them.</summary>
    internal static string PathType(LinkPath? path) => path switch
    {
        null => "unknown",
        { Relayed: true } => "relay",
        { LocalType: IceCandidateType.Host, RemoteType: IceCandidateType.Host } => "host",
        _ => "srflx",
    };

    /// <summary>The overlays to observe; none once the node is gone (a factory's meter may outlive it).</summary>
    private IReadOnlyList<OverlayNetwork> Overlays => _disposed ? [] : _overlays();

    private IEnumerable<Measurement<int>> ObserveLinksUp() =>
        _up.GroupBy(p => (p.Key.Overlay, p.Value)).Select(g =>
            new Measurement<int>(g.Count(), new("overlay.id", g.Key.Overlay), new("overlay.path.type", g.Key.Value)));

    private IEnumerable<Measurement<long>> ObserveDevice(Func<Tap.EthernetDeviceCounters, long> transmit, Func<Tap.EthernetDeviceCounters, long> receive)
    {
        foreach (var overlay in Overlays)
        {
            var counters = overlay.Device.Counters;
            yield return new(transmit(counters), new("overlay.id", overlay.Id), new("network.io.direction", "transmit"));
            yield return new(receive(counters), new("overlay.id", overlay.Id), new("network.io.direction", "receive"));
        }
    }

    private IEnumerable<Measurement<long>> ObserveSwitch(Func<Switching.SwitchCounters, long> read)
    {
        foreach (var overlay in Overlays)
            yield return new(read(overlay.Switch.Counters), new KeyValuePair<string, object?>("overlay.id", overlay.Id));
    }

    private IEnumerable<Measurement<int>> ObserveLearned()
    {
        foreach (var overlay in Overlays)
            yield return new(overlay.Switch.LearnedAddresses, new KeyValuePair<string, object?>("overlay.id", overlay.Id));
    }

    private IEnumerable<Measurement<long>> ObserveDrops()
    {
        foreach (var overlay in Overlays)
        {
            (string Reason, long Count)[] drops = [.. overlay.Switch.Counters.DropsByReason(), ("device_refused", overlay.Device.Counters.WriteDrops)];
            foreach (var (reason, count) in drops)
                yield return new(count, new("overlay.id", overlay.Id), new("overlay.drop.reason", reason));
        }
    }

    private IEnumerable<Measurement<int>> ObserveSignalingState()
    {
        var state = _signaling()?.State ?? SignalingState.Disconnected;
        foreach (var each in Enum.GetValues<SignalingState>())
            yield return new(each == state ? 1 : 0, new KeyValuePair<string, object?>("overlay.signaling.state", each.ToString().ToLowerInvariant()));
    }

    private IEnumerable<Measurement<long>> ObserveSignalingMessages()
    {
        if (_signaling()?.Counters is not { } c) yield break;
        (string Outcome, string Reason, long Count)[] counts =
        [
            ("accepted", "", c.Accepted + c.ResponsesMatched),
            ("dropped", "not_in_roster", c.DroppedNotInRoster), ("dropped", "unserved_overlay", c.DroppedUnservedOverlay),
            ("dropped", "unknown_type", c.DroppedUnknownType), ("dropped", "malformed", c.DroppedMalformed),
            ("dropped", "spoofed_node_id", c.DroppedSpoofedNodeId), ("dropped", "unknown_peer", c.DroppedUnknownPeer),
            ("dropped", "unmatched_response", c.DroppedUnmatchedResponse), ("dropped", "queue_full", c.DroppedQueueFull),
            ("dropped", "not_in_overlay_group", c.DroppedNotInOverlayGroup), ("dropped", "node_id_claimed", c.DroppedNodeIdClaimed),
        ];
        foreach (var (outcome, reason, count) in counts)
            yield return reason.Length == 0
                ? new(count, new KeyValuePair<string, object?>("overlay.signaling.outcome", outcome))
                : new(count, new("overlay.signaling.outcome", outcome), new("overlay.signaling.drop.reason", reason));
    }

    public void Dispose()
    {
        _disposed = true;
        _up.Clear();
        _activities.Dispose();
        if (_ownsMeter) _meter.Dispose();
    }
}
