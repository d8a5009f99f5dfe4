using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using Overlay.Signaling;
using Overlay.Switching;
using Overlay.Switching.Frames;
using Overlay.Tap;
using Overlay.Topology;

namespace Overlay.Engine;

/// <summary>
/// One overlay on one node: its virtual NIC, its switch, its Symphony topology and the link manager that turns the
/// topology's wishes into TinCan links. Membership, signaling and link events are posted to one
/// <see cref="SerialQueue"/>, so the topology and the link table are only ever touched by one thread at a time;
/// frames never pass through that queue (device → switch → link and back run on the I/O threads).
/// </summary>
internal sealed partial class OverlayEngine : ILinkController, IAsyncDisposable
{
    private readonly NodeContext _node;
    private readonly OverlayOptions _options;
    private readonly SerialQueue _queue;
    private readonly PeerRing _ring = new();
    private readonly SymphonyTopology _topology;
    private readonly Dictionary<UInt128, PeerLink> _links = [];
    private readonly Dictionary<UInt128, DateTimeOffset> _acceptedEdges = [];
    private readonly Dictionary<UInt128, OfferBudget> _offerBudgets = []; // new links each peer may still open
    private readonly ILogger _logger;
    private readonly Links.TinCanLinkOptions _linkOptions;
    private ITimer? _ticker;
    private readonly List<DeviceReadiness> _deviceQueues = []; // the NIC's queues watched by the node's event loops
    private bool _deviceFaultReported;
    private long _ticks;
    private long _refusedSignals;
    private bool _closed;

    /// <summary>New links (offers) taken from one peer: a burst of <see cref="NewLinkBurst"/>, then one per this interval.</summary>
    internal static readonly TimeSpan NewLinkInterval = TimeSpan.FromSeconds(1);

    /// <summary>New links one peer may open at once (a retry or two after a failure need not wait).</summary>
    internal const int NewLinkBurst = 3;

    public OverlayEngine(NodeContext node, OverlayOptions options, IEthernetDevice device)
    {
        _node = node;
        _options = options;
        Device = device;
        _logger = node.LoggerFactory.CreateLogger($"Overlay.Engine.{options.Id}");
        _queue = new SerialQueue(_logger);
        Switch = new OverlaySwitch(new NodeId(node.Self), new DevicePort(device),
            new SwitchOptions
            {
                MaxFrameLength = options.NetDevice.MTU + 18,
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
            StaticEdges = [.. options.StaticEdges.Select(NodeContext.ParseNodeId)],
        };
        _ring.Add(node.Self);
        _topology = new SymphonyTopology(node.Self, _ring, topology, this, node.Time, new Random());
        _linkOptions = new Links.TinCanLinkOptions
        {
            Mtu = options.NetDevice.MTU,
            KeepaliveInterval = node.Timings.KeepaliveInterval,
            DeadPeerTimeout = node.Timings.DeadPeerTimeout,
            HandshakeTimeout = node.Timings.SetupTimeout,
        };
    }

    public string Id => _options.Id;

    public OverlayOptions Options => _options;

    public IEthernetDevice Device { get; }

    public OverlaySwitch Switch { get; }

    private string MacText => string.Join(':', Device.MacAddress.GetAddressBytes().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>Starts the NIC, learns the members signaling already knows and starts housekeeping.</summary>
    public void Start(IEnumerable<string> knownPeers)
    {
        if (Device is IPolledEthernetDevice polled)
        {
            // Queue 0 on the loop of the link sockets (a frame's answer crosses no thread); each other queue on a loop of its own.
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
        var peers = knownPeers.ToArray();
        _queue.Post(() =>
        {
            foreach (var peer in peers) Joined(peer);
            _topology.Rebalance();
        });
        _ticker = _node.Time.CreateTimer(_ => _queue.Post(Tick), null, _node.Timings.TickInterval, _node.Timings.TickInterval);
    }

    /// <summary>A presence change from signaling (any thread).</summary>
    public void OnPeerEvent(PeerEvent e)
    {
        switch (e.Change)
        {
            case PeerChange.Joined:
                _queue.Post(() => Joined(e.NodeId));
                break;
            case PeerChange.Left:
                _queue.Post(() => Left(e.NodeId));
                break;
            // SignalingLost: the peers' state is unknown, not gone; links keep carrying frames and are watched by keepalives.
        }
    }

    /// <summary>An inbound request or notification for this overlay (from the node's signaling reader).</summary>
    public void OnSignal(IncomingSignal signal) => _queue.Post(() => HandleSignal(signal));

    /// <summary>How many of the links' sockets the node's event loop serves, of how many sockets (diagnostics, tests).</summary>
    internal Task<(int OnLoop, int Sockets)> CountLoopSocketsAsync() => _queue.InvokeAsync(() =>
    {
        var muxes = _links.Values.Select(l => l.Agent?.Endpoint.Mux).OfType<Transport.UdpMux>().ToArray();
        return (muxes.Count(m => m.Loop == _node.Loop), muxes.Length);
    });

    /// <summary>A snapshot, taken on the control queue.</summary>
    public Task<OverlayStatus> GetStatusAsync() => _queue.InvokeAsync(() =>
    {
        var roles = _topology.Links.ToDictionary(l => l.Peer, l => l.Roles);
        var links = _links.Values.OrderBy(l => l.Peer).Select(l => new LinkStatus(
            l.PeerNodeId, l.LinkId, roles.GetValueOrDefault(l.Peer), ToChange(l.Phase), l.Initiator, l.Path,
            l.Link?.Statistics.RoundTrip, l.Link?.Statistics, l.Since)).ToArray();
        var c = Switch.Counters;
        return new OverlayStatus(Id, Device.Name, MacText, _ring.Count, links,
            new SwitchStatus(c.LocalIn, c.LinkIn, c.DeliveredLocal, c.UnicastForwarded + c.FloodCopiesSent, c.Dropped, c.NotLearned), Switch.LearnedAddresses,
            Interlocked.Read(ref _refusedSignals));
    });

    private static LinkChange ToChange(LinkPhase phase) => phase switch
    {
        LinkPhase.Up => LinkChange.Up,
        LinkPhase.Down => LinkChange.Down,
        LinkPhase.Closed => LinkChange.Closed,
        _ => LinkChange.Connecting,
    };

    private void Joined(string nodeId)
    {
        if (_closed || !NodeIds.IsValid(nodeId)) return;
        var peer = NodeContext.ParseNodeId(nodeId);
        if (peer == _node.Self || !_ring.Add(peer)) return;
        LogJoined(nodeId, _ring.Count);
        _topology.OnPeerJoined(peer);
    }

    private void Left(string nodeId)
    {
        if (_closed || !NodeIds.IsValid(nodeId)) return;
        var peer = NodeContext.ParseNodeId(nodeId);
        if (peer == _node.Self || !_ring.Remove(peer)) return;
        LogLeft(nodeId, _ring.Count);
        Switch.ForgetSwitch(new NodeId(peer));
        _acceptedEdges.Remove(peer);
        _topology.OnPeerLeft(peer); // disconnects through the controller when linked
        if (_links.Remove(peer, out var stray)) Close(stray, LinkChange.Closed, "the peer left the overlay", notifyPeer: false);
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
        var now = _node.Time.GetUtcNow();
        ExpireAcceptedEdges(now);
        foreach (var (peer, budget) in _offerBudgets.ToArray())
            if (budget.IsFull(now)) _offerBudgets.Remove(peer);
        foreach (var link in _links.Values.ToArray())
        {
            if (link.Phase != LinkPhase.Down) continue;
            if (now - link.Since >= _node.Timings.RecoveryTimeout) Fail(link, $"no path back to the peer within {_node.Timings.RecoveryTimeout.TotalSeconds:0} s");
            else if (link.Initiator && !link.Restarting && now - link.LastRestart >= _node.Timings.RestartInterval) StartIceRestart(link);
        }
        // Every 10 ticks: members signaling no longer lists and that we cannot reach are gone (their departure may
        // have happened while our signaling connection was down, so no presence told us).
        if (_ticks % 10 == 0 && _node.Signaling.State == SignalingState.Connected)
        {
            var listed = _node.Signaling.GetPeers(Id);
            foreach (var member in _ring.ToArray())
                if (member != _node.Self && !listed.ContainsKey(NodeContext.FormatNodeId(member)) && !_links.ContainsKey(member))
                    Left(NodeContext.FormatNodeId(member));
        }
    }

    /// <summary>Closes every link and the NIC.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_ticker is not null) await _ticker.DisposeAsync().ConfigureAwait(false);
        var closing = await _queue.InvokeAsync(() =>
        {
            _closed = true;
            var all = _links.Values.ToArray();
            _links.Clear();
            return all.Select(l => CloseAsync(l, LinkChange.Closed, "the node is shutting down", notifyPeer: true)).ToArray();
        }).ConfigureAwait(false);
        await Task.WhenAll(closing).ConfigureAwait(false);
        await _queue.DisposeAsync().ConfigureAwait(false);
        foreach (var queue in _deviceQueues) queue.Unregister(); // before the descriptors close
        await Device.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "the overlay's NIC failed: {Fault}; frames for this host are dropped until the node restarts")]
    private partial void LogDeviceFailed(string fault);

    [LoggerMessage(Level = LogLevel.Information, Message = "member {Peer} joined ({Members} known)")]
    private partial void LogJoined(string peer, int members);

    [LoggerMessage(Level = LogLevel.Information, Message = "member {Peer} left ({Members} known)")]
    private partial void LogLeft(string peer, int members);

    /// <summary>A locally administered MAC derived from the node and overlay IDs, stable across restarts.</summary>
    public static PhysicalAddress DeriveMac(string nodeId, string overlayId)
    {
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(nodeId + "/" + overlayId));
        hash[0] = (byte)((hash[0] & 0xFC) | 0x02); // unicast, locally administered
        return new PhysicalAddress(hash[..6]);
    }
}

/// <summary>A token bucket for one peer's new links: <see cref="OverlayEngine.NewLinkBurst"/> at once, refilled one per <see cref="OverlayEngine.NewLinkInterval"/>.</summary>
internal readonly record struct OfferBudget(double Tokens, DateTimeOffset At)
{
    public static OfferBudget Full(DateTimeOffset now) => new(OverlayEngine.NewLinkBurst, now);

    private double TokensAt(DateTimeOffset now) =>
        Math.Min(OverlayEngine.NewLinkBurst, Tokens + (now - At) / OverlayEngine.NewLinkInterval);

    public bool IsFull(DateTimeOffset now) => TokensAt(now) >= OverlayEngine.NewLinkBurst;

    /// <summary>Takes one new link if the budget allows; the budget after the attempt either way.</summary>
    public bool TryTake(DateTimeOffset now, out OfferBudget after)
    {
        var tokens = TokensAt(now);
        var taken = tokens >= 1;
        after = new OfferBudget(taken ? tokens - 1 : tokens, now);
        return taken;
    }
}
