using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using Overlay.Signaling;
using Overlay.Switching;
using Overlay.Switching.Frames;
using Overlay.Tap;
using Overlay.Topology;

namespace Overlay.Engine;

/// <summary>
/// One overlay on one node, for its lifetime: its virtual NIC, its switch, membership from presence, its Symphony
/// topology, housekeeping ticks and status; the <see cref="LinkManager"/> turns the topology's wishes and the peers'
/// signals into TinCan links. Membership, signaling and link events are posted to one <see cref="SerialQueue"/>, so
/// the topology and the link table are only ever touched by one thread at a time; frames never pass through that
/// queue (device → switch → link and back run on the I/O threads).
/// </summary>
internal sealed partial class OverlayEngine : ILinkController, IAsyncDisposable
{
    private readonly NodeContext _node;
    private readonly OverlayOptions _options;
    private readonly SerialQueue _queue;
    private readonly PeerRing _ring = new();
    private readonly HashSet<UInt128> _absent = []; // members whose presence went while a link to them works
    private readonly SymphonyTopology _topology;
    private readonly LinkManager _links;
    private readonly BackgroundWork _work;
    private readonly ILogger _logger;
    private ITimer? _ticker;
    private readonly List<DeviceReadiness> _deviceQueues = []; // the NIC's queues watched by the node's event loops
    private bool _deviceFaultReported;
    private long _ticks;
    private bool _closed;

    public OverlayEngine(NodeContext node, OverlayOptions options, IEthernetDevice device, Links.TrustAnchor? trust = null)
    {
        _node = node;
        _options = options;
        Device = device;
        _logger = node.LoggerFactory.CreateLogger($"Overlay.Engine.{options.Id}");
        _queue = new SerialQueue(_logger);
        _work = new BackgroundWork(_logger);
        Switch = new OverlaySwitch(new NodeId(node.Self), new DevicePort(device),
            new SwitchOptions
            {
                MaxFrameLength = options.NetDevice.Mtu + EthernetFrame.HeaderLength + EthernetFrame.VlanTagLength,
                MaxLearnedAddresses = options.MaxLearnedAddresses,
                MaxLearnedPaths = 2 * options.MaxLearnedAddresses,
                MaxLocalAddresses = options.MaxLocalAddresses,
            }, node.Time, [EthernetFrame.MacKey(device.MacAddress.GetAddressBytes())]);
        var topology = new TopologyOptions
        {
            MinSuccessors = options.MinSuccessors,
            MaxLongDistEdges = options.MaxLongDistEdges,
            MaxOnDemandEdges = options.MaxOnDemandEdges,
            MaxIncomingEdges = options.MaxIncomingEdges,
            StaticEdges = [.. options.StaticEdges.Select(id => Switching.NodeId.Parse(id).Value)],
        };
        _ring.Add(node.Self);
        _topology = new SymphonyTopology(node.Self, _ring, topology, this, node.Time, new Random());
        _links = new LinkManager(node, options, MacText, Switch, _topology, _queue, _work, _logger, trust);
    }

    public string Id => _options.Id;

    public OverlayOptions Options => _options;

    public IEthernetDevice Device { get; }

    public OverlaySwitch Switch { get; }

    private string MacText => string.Join(':', Device.MacAddress.GetAddressBytes().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>Starts the NIC, learns the members signaling already knows and starts housekeeping.</summary>
    public void Start(IEnumerable<string> knownPeers)
    {
        StartDevice();
        var peers = knownPeers.ToArray();
        _queue.Post(() =>
        {
            foreach (var peer in peers) Joined(peer);
            _topology.Rebalance();
        });
        // At the multiples of the interval, the instants of the links' keepalives (every other one, by default): one wake-up.
        var interval = _node.Timings.TickInterval;
        _ticker = _node.Time.CreateTimer(_ => _queue.Post(Tick), null, Transport.TimeGrid.UntilNextMultiple(_node.Time, _node.Time.GetTimestamp(), interval), interval);
    }

    /// <summary>The NIC feeds the switch: a TAP is polled on the node's event loops, an in-memory NIC delivers on its host's thread.</summary>
    private void StartDevice()
    {
        if (Device is IPolledEthernetDevice polled)
        {
            // Queue i on loop i, which writes the frames of its links into that queue: Linux steers the host's answers
            // to the queue their flow came in by, so they are read by the loop of the link they leave on.
            polled.StartPolled(new DeviceInput(Switch));
            for (var queue = 0; queue < polled.ReadinessDescriptors.Count; queue++)
            {
                var readiness = new DeviceReadiness(polled, queue, _node.Loops.Get(queue));
                readiness.Register();
                _deviceQueues.Add(readiness);
            }
        }
        else
        {
            Device.Start(new DeviceInput(Switch)); // an in-memory NIC: frames come on the thread that plays the host
        }
    }

    /// <summary>The topology wants a link to <paramref name="peer"/> (on the control queue).</summary>
    public void Connect(UInt128 peer, LinkRoles roles) => _links.Connect(peer, roles);

    /// <summary>The topology no longer wants the link to <paramref name="peer"/> (on the control queue).</summary>
    public void Disconnect(UInt128 peer) => _links.Disconnect(peer);

    /// <summary>A presence change from signaling (any thread).</summary>
    public void OnPeerEvent(PeerEvent e)
    {
        switch (e.Change)
        {
            case PeerChange.Joined:
                _queue.Post(() => Joined(e.NodeId));
                break;
            case PeerChange.Left:
                _queue.Post(() => Absent(e.NodeId));
                break;
            case PeerChange.Revoked:
                _queue.Post(() => Left(e.NodeId, LinkCloseReason.Revoked));
                break;
            // SignalingLost: the peers' state is unknown, not gone; links keep carrying frames and are watched by keepalives.
        }
    }

    /// <summary>An inbound request or notification for this overlay (from the node's signaling reader).</summary>
    public void OnSignal(IncomingSignal signal) => _queue.Post(() => HandleSignal(signal));

    private void HandleSignal(IncomingSignal signal)
    {
        if (!TryMember(signal.SenderNodeId, out var peer)) return;
        if (!_ring.Contains(peer)) Joined(signal.SenderNodeId); // signaling vouched for it; its presence may still be queued
        _links.OnSignal(signal, peer);
    }

    /// <summary>How many of the links' sockets the node's event loop serves, of how many sockets (diagnostics, tests).</summary>
    internal Task<(int[] PerLoop, int Sockets)> CountLoopSocketsAsync() => _queue.InvokeAsync(_links.CountLoopSockets);

    /// <summary>The authenticated link to a peer while it is up, from the control queue.</summary>
    internal Task<Links.TinCanLink?> UpLinkToAsync(UInt128 peer) => _queue.InvokeAsync(() => _links.UpLinkTo(peer));

    /// <summary>Tasks started beside the control queue and still running (tests).</summary>
    internal BackgroundWork Work => _work;

    /// <summary>A snapshot, taken on the control queue.</summary>
    public Task<OverlayStatus> GetStatusAsync() => _queue.InvokeAsync(() =>
    {
        var roles = _topology.Links.ToDictionary(l => l.Peer, l => l.Roles);
        var links = _links.Status(roles);
        var c = Switch.Counters;
        return new OverlayStatus(Id, Device.Name, MacText, _ring.Count, links,
            new SwitchStatus(c.LocalIn, c.LinkIn, c.DeliveredLocal, c.UnicastForwarded + c.FloodCopiesSent, c.Dropped, c.NotLearned)
            {
                Floods = c.FloodsOriginated, UnknownUnicastFloods = c.UnknownUnicastFloods, Announcements = c.Announcements, GapCopies = c.GapCopies, PathLoopsBroken = c.PathLoopsBroken,
                MssClamped = c.MssClamped, TooBigAnswered = c.TooBigAnswered, TooBigDropped = c.TooBigDropped, Fragmented = c.Fragmented,
                DropsByReason = c.DropsByReason().ToDictionary(d => d.Reason, d => d.Count),
            },
            Switch.LearnedAddresses,
            _links.RefusedSignals);
    });

    /// <summary>The member a signaling event names; false once closed or for a malformed node ID.</summary>
    private bool TryMember(string nodeId, out UInt128 peer)
    {
        peer = default;
        if (_closed || !Switching.NodeId.TryParse(nodeId, out var id)) return false;
        peer = id.Value;
        return true;
    }

    private void Joined(string nodeId)
    {
        if (!TryMember(nodeId, out var peer)) return;
        _absent.Remove(peer);
        if (peer == _node.Self || !_ring.Add(peer)) return;
        _ring.TellSwitch(_node.Self, Switch);
        LogJoined(nodeId, _ring.Count);
        _topology.OnPeerJoined(peer);
    }

    /// <summary>
    /// Signaling says the member went away. Presence is advisory: a server restart, our own reconnect or a dropped XMPP
    /// session says the same of members that are fine, so a member with an authenticated link stays while the link's
    /// keepalives pass (a clean stop says goodbye over the link itself); one without leaves now.
    /// </summary>
    private void Absent(string nodeId)
    {
        if (!TryMember(nodeId, out var peer) || peer == _node.Self || !_ring.Contains(peer)) return;
        if (_links.HasEstablishedLink(peer))
        {
            if (_absent.Add(peer)) LogAbsent(nodeId);
            return;
        }
        Left(peer);
    }

    private void Left(string nodeId, LinkCloseReason reason)
    {
        if (TryMember(nodeId, out var peer)) Left(peer, reason);
    }

    private void Left(UInt128 peer, LinkCloseReason reason = LinkCloseReason.PeerLeft)
    {
        _absent.Remove(peer);
        if (_closed || peer == _node.Self) return;
        if (reason != LinkCloseReason.PeerLeft) _links.OnPeerLeft(peer, reason); // before the topology ends it as unwanted
        if (!_ring.Remove(peer)) return;
        _ring.TellSwitch(_node.Self, Switch);
        LogLeft(new NodeId(peer).ToString(), _ring.Count, reason == LinkCloseReason.Revoked ? "no longer a member" : "left");
        Switch.ForgetSwitch(new NodeId(peer));
        _links.ForgetAcceptedEdge(peer);
        _topology.OnPeerLeft(peer); // disconnects through the controller when linked
        _links.OnPeerLeft(peer, reason);
    }

    private void Tick()
    {
        if (_closed) return;
        _ticks++;
        if (!_deviceFaultReported && Device.Fault is { } fault)
        {
            _deviceFaultReported = true;
            LogDeviceFailed(fault);
        }
        Switch.Tick();
        foreach (var (node, bytes) in Switch.TakeTrafficByNode()) _topology.OnTraffic(node.Value, bytes);
        _topology.Tick();
        _links.Tick(_node.Time.GetUtcNow());
        // A member whose presence went is gone once its link is too, or falls silent (both then say it is gone). Silent
        // here is shorter than the dead-peer timeout: a link hears the peer's keepalive and the echo of its own every
        // keepalive interval, so one and a half intervals without either, with signaling saying the same, is a node that
        // died (a crash closes its signaling connection at once), and the ring routes around it seconds sooner.
        foreach (var peer in _absent.ToArray())
        {
            if (!_links.HasEstablishedLink(peer)) Left(peer);
            else if (_links.IsDown(peer) || _links.IsQuiet(peer, _node.Timings.KeepaliveInterval * 1.5)) Left(peer, LinkCloseReason.PeerGone);
        }
        // Every 10 ticks: members signaling no longer lists and that we cannot reach are gone (their departure may
        // have happened while our signaling connection was down, so no presence told us).
        if (_ticks % 10 == 0 && _node.Signaling.State == SignalingState.Connected)
        {
            var listed = _node.Signaling.GetPeers(Id);
            foreach (var member in _ring.ToArray())
                if (member != _node.Self && !listed.ContainsKey(new Switching.NodeId(member).ToString()) && !_links.HasLink(member))
                    Left(member);
        }
    }

    /// <summary>Closes every link and the NIC, once the work started beside the control queue has ended.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_ticker is not null) await _ticker.DisposeAsync().ConfigureAwait(false);
        var closing = await _queue.InvokeAsync(() =>
        {
            _closed = true;
            return _links.CloseAll();
        }).ConfigureAwait(false);
        await Task.WhenAll(closing).ConfigureAwait(false);
        // Negotiations see their links' lifetimes cancelled and end; a signal stuck in a dead connection is not waited for long.
        await _work.WhenIdleAsync(_node.Timings.RequestTimeout, _node.Time).ConfigureAwait(false);
        await _queue.DisposeAsync().ConfigureAwait(false);
        foreach (var queue in _deviceQueues) queue.Unregister(); // before the descriptors close
        await Device.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "the overlay's NIC failed: {Fault}; frames for this host are dropped until the node restarts")]
    private partial void LogDeviceFailed(string fault);

    [LoggerMessage(Level = LogLevel.Information, Message = "member {Peer} joined ({Members} known)")]
    private partial void LogJoined(string peer, int members);

    [LoggerMessage(Level = LogLevel.Information, Message = "member {Peer} {How} ({Members} known)")]
    private partial void LogLeft(string peer, int members, string how);

    [LoggerMessage(Level = LogLevel.Information, Message = "member {Peer}'s presence went away; its link stays while its keepalives pass")]
    private partial void LogAbsent(string peer);

    /// <summary>A locally administered MAC derived from the node and overlay IDs, stable across restarts.</summary>
    public static PhysicalAddress DeriveMac(string nodeId, string overlayId)
    {
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(nodeId + "/" + overlayId));
        hash[0] = (byte)((hash[0] & 0xFC) | 0x02); // unicast, locally administered
        return new PhysicalAddress(hash[..6]);
    }
}
