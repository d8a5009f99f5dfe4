using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Switching;
using Overlay.Topology;

namespace Overlay.Engine;

/// <summary>
/// The links of one overlay: the table of <see cref="PeerLink"/>s by peer, the edges accepted for peers whose offer is
/// still to come, and each peer's budget of new links. It turns the topology's wishes and the peers' signals (edge
/// request, offer, candidate, teardown) into links: edge request → offer/answer → ICE with trickled candidates → DTLS
/// → switch port; it restarts ICE on a link that fell silent and ends links (<see cref="End"/>, the one place that
/// does). Methods without "Async" run on the overlay's control queue; the async ones run beside it, tracked by
/// <see cref="BackgroundWork"/>, and report back by posting, after checking that their link is still the current one.
/// </summary>
internal sealed partial class LinkManager
{
    private readonly NodeContext _node;
    private readonly string _overlayId;
    private readonly string _macText;
    private readonly OverlaySwitch _switch;
    private readonly SymphonyTopology _topology;
    private readonly SerialQueue _queue;
    private readonly BackgroundWork _work;
    private readonly ILinkPathFactory _paths;
    private readonly TinCanLinkOptions _linkOptions;
    private readonly ILogger _logger;
    private readonly Dictionary<UInt128, PeerLink> _links = [];
    private readonly Dictionary<UInt128, DateTimeOffset> _acceptedEdges = [];
    private readonly Dictionary<UInt128, OfferBudget> _offerBudgets = []; // new links each peer may still open
    private long _refusedSignals;
    private bool _closed;

    /// <summary>New links (offers) taken from one peer: a burst of <see cref="NewLinkBurst"/>, then one per this interval.</summary>
    internal static readonly TimeSpan NewLinkInterval = TimeSpan.FromSeconds(1);

    /// <summary>New links one peer may open at once (a retry or two after a failure need not wait).</summary>
    internal const int NewLinkBurst = 3;

    public LinkManager(NodeContext node, OverlayOptions options, string macText, OverlaySwitch sw, SymphonyTopology topology,
        SerialQueue queue, BackgroundWork work, ILogger logger, TrustAnchor? trust = null)
    {
        _node = node;
        _overlayId = options.Id;
        _macText = macText;
        _switch = sw;
        _topology = topology;
        _queue = queue;
        _work = work;
        _paths = node.Paths;
        _logger = logger;
        _linkOptions = new TinCanLinkOptions
        {
            Mtu = options.NetDevice.Mtu,
            KeepaliveInterval = node.Timings.KeepaliveInterval,
            DeadPeerTimeout = node.Timings.DeadPeerTimeout,
            HandshakeTimeout = node.Timings.SetupTimeout,
            Trust = trust,
            RoundTripMeasured = node.Telemetry is { } telemetry ? rtt => telemetry.OnRoundTrip(options.Id, rtt) : null,
        };
    }

    /// <summary>Signals refused (malformed, unknown link, too fast), for status.</summary>
    public long RefusedSignals => Interlocked.Read(ref _refusedSignals);

    public bool HasLink(UInt128 peer) => _links.ContainsKey(peer);

    /// <summary>The authenticated link to <paramref name="peer"/> while it is up (tests drive a hostile member's link with it).</summary>
    public TinCanLink? UpLinkTo(UInt128 peer) => _links.TryGetValue(peer, out var l) && l.State == PeerLinkState.Up ? l.Link : null;

    /// <summary>The links, ordered by peer, as status reports them.</summary>
    public LinkStatus[] Status(IReadOnlyDictionary<UInt128, LinkRoles> roles) => [.. _links.Values.OrderBy(l => l.Peer).Select(l => new LinkStatus(
        l.PeerNodeId, l.LinkId, roles.GetValueOrDefault(l.Peer), ToChange(l.Phase), l.Initiator, l.Path,
        l.Link?.Statistics.RoundTrip, l.Link?.Statistics, l.Since))];

    /// <summary>How many of the links' sockets each of the node's event loops serves (by loop index), and how many sockets there are.</summary>
    public (int[] PerLoop, int Sockets) CountLoopSockets()
    {
        var muxes = _links.Values.Select(l => (l.Agent as IcePath)?.Agent.Endpoint.Mux).OfType<Transport.UdpMux>().ToArray();
        var loops = _node.Loops.Loops;
        return ([.. loops.Select(loop => muxes.Count(m => m.Loop == loop))], muxes.Length);
    }

    private static LinkChange ToChange(LinkPhase phase) => phase switch
    {
        LinkPhase.Up => LinkChange.Up,
        LinkPhase.Down => LinkChange.Down,
        LinkPhase.Closed => LinkChange.Closed,
        _ => LinkChange.Connecting,
    };

    /// <summary>The topology wants a link to <paramref name="peer"/>: this node negotiates it.</summary>
    public void Connect(UInt128 peer, LinkRoles roles)
    {
        if (_closed || _links.ContainsKey(peer)) return;
        var link = new PeerLink(peer, Guid.NewGuid().ToString("N"), initiator: true, _switch, _node.Time.GetUtcNow());
        _links[peer] = link;
        link.Setup = _node.Telemetry?.StartSetup(_overlayId, link.PeerNodeId, link.LinkId, initiator: true);
        Raise(link, LinkChange.Connecting, "");
        _work.Track(InitiateAsync(link, roles));
    }

    /// <summary>The topology no longer wants the link to <paramref name="peer"/>.</summary>
    public void Disconnect(UInt128 peer)
    {
        if (_links.TryGetValue(peer, out var link)) End(link, LinkCloseReason.NotWanted);
    }

    /// <summary>The peer left the overlay: no edge is held for it any more (before the topology hears of it).</summary>
    public void ForgetAcceptedEdge(UInt128 peer) => _acceptedEdges.Remove(peer);

    /// <summary>The peer left the overlay, or is no longer a member: its link ends, for that reason.</summary>
    public void OnPeerLeft(UInt128 peer, LinkCloseReason reason = LinkCloseReason.PeerLeft)
    {
        if (_links.TryGetValue(peer, out var stray)) End(stray, reason);
    }

    /// <summary>A link to the peer was authenticated and has not ended (it may be down and recovering).</summary>
    public bool HasEstablishedLink(UInt128 peer) => _links.TryGetValue(peer, out var link) && link.Phase is LinkPhase.Up or LinkPhase.Down;

    /// <summary>The link to the peer has fallen silent (its keepalives fail).</summary>
    public bool IsDown(UInt128 peer) => _links.TryGetValue(peer, out var link) && link.Phase == LinkPhase.Down;

    /// <summary>The link to the peer is up but nothing has arrived on it for at least <paramref name="silence"/>.</summary>
    public bool IsQuiet(UInt128 peer, TimeSpan silence) =>
        _links.TryGetValue(peer, out var link) && link.Phase == LinkPhase.Up && link.Link is { } tincan && tincan.Silence >= silence;

    private bool IsCurrent(PeerLink link) => !_closed && _links.TryGetValue(link.Peer, out var current) && current == link;

    /// <summary>A link signal from <paramref name="peer"/>, a member of the overlay.</summary>
    public void OnSignal(IncomingSignal signal, UInt128 peer)
    {
        switch (signal.Message)
        {
            case EdgeRequest request:
                OnEdgeRequest(signal, peer, request);
                break;
            case LinkOffer offer:
                OnOffer(signal, peer, offer);
                break;
            case LinkCandidate candidate:
                if (_links.TryGetValue(peer, out var link) && link.LinkId == candidate.LinkId && link.Agent is { } agent
                    && IceCandidate.TryParse(candidate.Candidate, out var parsed) && parsed is not null)
                {
                    link.Mark($"remote {parsed.Type}", _node.Time.GetUtcNow());
                    agent.AddRemoteCandidate(parsed);
                }
                else
                    Interlocked.Increment(ref _refusedSignals);
                break;
            case LinkTeardown teardown:
                // The peer may end the link it names, and no other.
                if (_links.TryGetValue(peer, out var torn) && torn.LinkId == teardown.LinkId) End(torn, LinkCloseReason.ClosedByPeer, teardown.Reason);
                else if (!_links.ContainsKey(peer)) ReleaseAcceptedEdge(peer); // the peer gave up between its edge request and its offer
                break;
            default:
                Interlocked.Increment(ref _refusedSignals);
                Respond(signal, null);
                break;
        }
    }

    private void OnEdgeRequest(IncomingSignal signal, UInt128 peer, EdgeRequest request)
    {
        var decision = _topology.OnLinkRequested(peer, EdgeTypes.Parse(request.EdgeType));
        // Both asked at once and the peer's request won: our own attempt gives way (the peer refuses it anyway).
        if (decision.Accepted && _links.TryGetValue(peer, out var mine) && mine.Initiator && mine.Phase != LinkPhase.Up)
            End(mine, LinkCloseReason.CollisionLost);
        // Until its offer arrives the peer holds a place in our topology; if it never comes (the peer changed its
        // mind before offering), the place is given back after a while so that our own wishes are not blocked.
        if (decision.Accepted && !_links.ContainsKey(peer)) _acceptedEdges[peer] = _node.Time.GetUtcNow();
        Respond(signal, new EdgeResponse(_overlayId, decision.Accepted, decision.Reason));
    }

    /// <summary>Housekeeping each tick: held edges and offer budgets expire, down links are restarted or given up.</summary>
    public void Tick(DateTimeOffset now)
    {
        ExpireAcceptedEdges(now);
        foreach (var (peer, budget) in _offerBudgets.ToArray())
            if (budget.IsFull(now)) _offerBudgets.Remove(peer);
        foreach (var link in _links.Values.ToArray())
        {
            if (link.Phase != LinkPhase.Down) continue;
            if (now - link.Since >= _node.Timings.RecoveryTimeout)
                End(link, LinkCloseReason.Unrecoverable, $"no path back to the peer within {_node.Timings.RecoveryTimeout.TotalSeconds:0} s");
            else if (link.Initiator && link.State != PeerLinkState.Restarting && now - link.LastRestart >= _node.Timings.RestartInterval)
                StartIceRestart(link);
        }
    }

    /// <summary>Edges accepted for peers whose offer never came are released (see <see cref="OnEdgeRequest"/>).</summary>
    private void ExpireAcceptedEdges(DateTimeOffset now)
    {
        foreach (var (peer, accepted) in _acceptedEdges.ToArray())
        {
            if (_links.ContainsKey(peer)) _acceptedEdges.Remove(peer);
            else if (now - accepted >= 2 * _node.Timings.RequestTimeout) ReleaseAcceptedEdge(peer);
        }
    }

    private void ReleaseAcceptedEdge(UInt128 peer)
    {
        if (!_acceptedEdges.Remove(peer) || _links.ContainsKey(peer)) return;
        _topology.OnLinkDown(peer, failed: false);
    }

    private void OnOffer(IncomingSignal signal, UInt128 peer, LinkOffer offer)
    {
        if (!TryReadFingerprint(offer.Fingerprint, out var fingerprint) || !new IceCredentials(offer.IceUfrag, offer.IcePassword).IsValid())
        {
            Interlocked.Increment(ref _refusedSignals);
            Respond(signal, new LinkReject(_overlayId, offer.LinkId, "malformed offer (fingerprint or ICE credentials)"));
            return;
        }
        _links.TryGetValue(peer, out var existing);
        // Each new link costs a socket, maybe a TURN allocation and a DTLS handshake, and each ICE restart new checks and
        // perhaps a new allocation: a member offering one after another gets a few at once and then one a second. A peer
        // that truly started over retries after its backoff.
        var now = _node.Time.GetUtcNow();
        var budget = _offerBudgets.TryGetValue(peer, out var b) ? b : OfferBudget.Full(now);
        var allowed = budget.TryTake(now, out budget);
        _offerBudgets[peer] = budget;
        if (existing is not null && existing.LinkId == offer.LinkId && !existing.Initiator)
        {
            // A restart past the budget is not answered rather than refused: a refusal would end a link that may still
            // work, and the initiator tries again after its restart interval.
            if (allowed) OnRestartOffer(signal, existing, offer);
            else Interlocked.Increment(ref _refusedSignals);
            return;
        }
        if (!allowed)
        {
            Interlocked.Increment(ref _refusedSignals);
            Respond(signal, new LinkReject(_overlayId, offer.LinkId, "new links from this peer come too fast; retry later"));
            return;
        }
        // An offer with its edge kind asks for the edge as an edge request does (the topology decides, collisions
        // included); one without it follows an edge request, or comes from a node that does not ask.
        var requested = offer.EdgeType is not null;
        if (requested)
        {
            var decision = _topology.OnLinkRequested(peer, EdgeTypes.Parse(offer.EdgeType));
            if (!decision.Accepted)
            {
                Respond(signal, new LinkReject(_overlayId, offer.LinkId, decision.Reason));
                return;
            }
        }
        if (existing is not null)
        {
            if (existing.LinkId == offer.LinkId || (existing.Initiator && existing.Phase != LinkPhase.Up && _node.Self > peer))
            {
                Respond(signal, new LinkReject(_overlayId, offer.LinkId, "collision: the higher node ID's link wins"));
                return;
            }
            // The peer started over (it restarted, or our attempt lost the collision): the new link replaces the old.
            End(existing, LinkCloseReason.Replaced);
        }
        else if (!requested && !_topology.Links.Any(l => l.Peer == peer))
        {
            var decision = _topology.OnLinkRequested(peer, LinkRoles.None);
            if (!decision.Accepted)
            {
                Respond(signal, new LinkReject(_overlayId, offer.LinkId, decision.Reason));
                return;
            }
        }
        Accept(signal, peer, offer, fingerprint, now);
    }

    /// <summary>
    /// Ends <paramref name="link"/>: out of the table if it is the current link, out of the switch, its resources
    /// released, the peer told and the topology told as <see cref="LinkEnding.Of"/> decides for <paramref name="reason"/>.
    /// Every link ends here; who may end one: our topology (Disconnect), membership (the peer left), the peer for the
    /// link it names (teardown, a replacing offer, a winning request), negotiation and recovery timeouts, shutdown.
    /// </summary>
    private void End(PeerLink link, LinkCloseReason reason, string detail = "")
    {
        if (_links.TryGetValue(link.Peer, out var current) && current == link) _links.Remove(link.Peer);
        var ending = LinkEnding.Of(reason, detail);
        _work.Track(CloseAsync(link, ending));
        if (ending.Topology != TopologyNotice.None) _topology.OnLinkDown(link.Peer, failed: ending.Topology == TopologyNotice.Failed);
    }

    /// <summary>Shutdown: every link is closed (the peers told); the tasks complete when each is released.</summary>
    public Task[] CloseAll()
    {
        _closed = true;
        var all = _links.Values.ToArray();
        _links.Clear();
        var ending = LinkEnding.Of(LinkCloseReason.Shutdown);
        return [.. all.Select(l => CloseAsync(l, ending))];
    }

    /// <summary>Takes the link out of the switch and releases its resources (the caller removed it from the table).</summary>
    private async Task CloseAsync(PeerLink link, LinkEnding ending)
    {
        var wasUp = link.Port is not null && link.State == PeerLinkState.Up;
        var knownToPeer = link.KnownToPeer;
        (link.Agent as IcePath)?.Retire(); // now, before the awaits: a link that replaces this one is placed by the live links
        link.TryMoveTo(PeerLinkState.Closed, _node.Time.GetUtcNow());
        link.EndSetup(ending.Change == LinkChange.Closed ? ActivityStatusCode.Unset : ActivityStatusCode.Error, ending.Text);
        if (link.Port is not null)
        {
            _switch.RemoveLink(link.SwitchId);
            LogPortRemoved(link.PeerNodeId, link.LinkId, "closed");
        }
        Raise(link, ending.Change, ending.Text);
        if (wasUp || ending.Change != LinkChange.Closed || ending.Text.Length > 0) LogClosed(link.PeerNodeId, ending.Change, ending.Text);
        await link.Lifetime.CancelAsync().ConfigureAwait(false);
        try
        {
            // The goodbye goes over the link itself first: it reaches the peer whatever signaling's state.
            if (ending.NotifyPeer) link.Link?.SayGoodbye();
            if (ending.NotifyPeer && knownToPeer)
                await SendQuietlyAsync(link.PeerNodeId, new LinkTeardown(_overlayId, link.LinkId, ending.Text.Length == 0 ? ending.Change.ToString() : ending.Text)).ConfigureAwait(false);
            if (link.Link is { } tincan) await tincan.DisposeAsync().ConfigureAwait(false);
            if (link.Agent is { } agent) await agent.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            link.Lifetime.Dispose();
        }
    }

    private void Raise(PeerLink link, LinkChange change, string reason) =>
        _node.RaiseLink(new LinkEvent(_overlayId, link.PeerNodeId, link.LinkId, change, link.Path, reason, _node.Time.GetUtcNow() - link.Started));

    private void AddCandidates(ILinkPath agent, IReadOnlyList<string> candidates)
    {
        foreach (var text in candidates)
        {
            if (IceCandidate.TryParse(text, out var candidate) && candidate is not null) agent.AddRemoteCandidate(candidate);
            else Interlocked.Increment(ref _refusedSignals);
        }
    }

    private static bool TryReadFingerprint(string text, out CertificateFingerprint fingerprint)
    {
        const string prefix = "sha-256 ";
        fingerprint = default;
        return text.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && CertificateFingerprint.TryParse(text[prefix.Length..], out fingerprint);
    }

    private void Respond(IncomingSignal signal, SignalMessage? response)
    {
        if (!signal.ExpectsResponse || response is null) return;
        _work.Track(RespondQuietlyAsync(signal, response));
    }

    private async Task RespondQuietlyAsync(IncomingSignal signal, SignalMessage response)
    {
        try
        {
            await signal.RespondAsync(response).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SignalingException or InvalidOperationException or OperationCanceledException)
        {
            LogSignalFailed(signal.SenderNodeId, e.Message);
        }
    }

    private void Send(PeerLink link, SignalMessage message) => _work.Track(SendQuietlyAsync(link.PeerNodeId, message));

    private async Task SendQuietlyAsync(string peerNodeId, SignalMessage message)
    {
        try
        {
            await _node.Signaling.SendAsync(peerNodeId, message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SignalingException or InvalidOperationException or OperationCanceledException)
        {
            LogSignalFailed(peerNodeId, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "link to {Peer} {Change}: {Reason}")]
    private partial void LogClosed(string peer, LinkChange change, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "switch port to {Peer} removed (link {LinkId} {Why})")]
    private partial void LogPortRemoved(string peer, string linkId, string why);

    [LoggerMessage(Level = LogLevel.Debug, Message = "signaling to {Peer} failed: {Reason}")]
    private partial void LogSignalFailed(string peer, string reason);
}
