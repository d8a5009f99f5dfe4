using Microsoft.Extensions.Logging;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Topology;

namespace Overlay.Engine;

// The link manager: edge request → offer/answer → ICE → DTLS, trickled candidates, ICE restart of a link that fell
// silent, teardown. Methods without "Async" run on the control queue; the async ones run beside it and report back
// by posting, after checking that the link they worked on is still the current one for its peer.
internal sealed partial class OverlayEngine
{
    /// <summary>The topology wants a link to <paramref name="peer"/>: this node negotiates it.</summary>
    public void Connect(UInt128 peer, LinkRoles roles)
    {
        if (_closed || _links.ContainsKey(peer)) return;
        var link = new PeerLink(peer, Guid.NewGuid().ToString("N"), initiator: true, Switch, _node.Time.GetUtcNow());
        _links[peer] = link;
        Raise(link, LinkChange.Connecting, "");
        _ = InitiateAsync(link, roles);
    }

    /// <summary>The topology no longer wants the link to <paramref name="peer"/>.</summary>
    public void Disconnect(UInt128 peer)
    {
        if (_links.Remove(peer, out var link)) Close(link, LinkChange.Closed, "no longer wanted", notifyPeer: true);
    }

    private bool IsCurrent(PeerLink link) => !_closed && _links.TryGetValue(link.Peer, out var current) && current == link;

    private void HandleSignal(IncomingSignal signal)
    {
        if (_closed || !NodeIds.IsValid(signal.SenderNodeId)) return;
        var peer = NodeContext.ParseNodeId(signal.SenderNodeId);
        if (!_ring.Contains(peer)) Joined(signal.SenderNodeId); // signaling vouched for it; its presence may still be queued
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
                    agent.AddRemoteCandidate(parsed);
                else
                    Interlocked.Increment(ref _refusedSignals);
                break;
            case LinkTeardown teardown:
                if (_links.TryGetValue(peer, out var torn) && torn.LinkId == teardown.LinkId)
                {
                    _links.Remove(peer);
                    Close(torn, LinkChange.Closed, $"closed by the peer: {teardown.Reason}", notifyPeer: false);
                    _topology.OnLinkDown(peer, failed: false);
                }
                else if (!_links.ContainsKey(peer))
                {
                    ReleaseAcceptedEdge(peer); // the peer gave up between its edge request and its offer
                }
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
        {
            _links.Remove(peer);
            Close(mine, LinkChange.Closed, "collision: the peer's request won", notifyPeer: false);
        }
        // Until its offer arrives the peer holds a place in our topology; if it never comes (the peer changed its
        // mind before offering), the place is given back after a while so that our own wishes are not blocked.
        if (decision.Accepted && !_links.ContainsKey(peer)) _acceptedEdges[peer] = _node.Time.GetUtcNow();
        Respond(signal, new EdgeResponse(Id, decision.Accepted, decision.Reason));
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
            Respond(signal, new LinkReject(Id, offer.LinkId, "malformed offer (fingerprint or ICE credentials)"));
            return;
        }
        _links.TryGetValue(peer, out var existing);
        if (existing is not null && existing.LinkId == offer.LinkId && !existing.Initiator)
        {
            OnRestartOffer(signal, existing, offer);
            return;
        }
        // Each new link costs a socket, maybe a TURN allocation and a DTLS handshake: a member offering one after another
        // (each replacing the last) gets a few at once and then one a second. A peer that truly started over retries after
        // its backoff.
        var now = _node.Time.GetUtcNow();
        var budget = _offerBudgets.TryGetValue(peer, out var b) ? b : OfferBudget.Full(now);
        var allowed = budget.TryTake(now, out budget);
        _offerBudgets[peer] = budget;
        if (!allowed)
        {
            Interlocked.Increment(ref _refusedSignals);
            Respond(signal, new LinkReject(Id, offer.LinkId, "new links from this peer come too fast; retry later"));
            return;
        }
        if (existing is not null)
        {
            if (existing.LinkId == offer.LinkId || (existing.Initiator && existing.Phase != LinkPhase.Up && _node.Self > peer))
            {
                Respond(signal, new LinkReject(Id, offer.LinkId, "collision: the higher node ID's link wins"));
                return;
            }
            // The peer started over (it restarted, or our attempt lost the collision): the new link replaces the old.
            _links.Remove(peer);
            Close(existing, LinkChange.Closed, "replaced by a new link from the peer", notifyPeer: false);
        }
        else if (!_topology.Links.Any(l => l.Peer == peer))
        {
            var decision = _topology.OnLinkRequested(peer, LinkRoles.None);
            if (!decision.Accepted)
            {
                Respond(signal, new LinkReject(Id, offer.LinkId, decision.Reason));
                return;
            }
        }

        var link = new PeerLink(peer, offer.LinkId, initiator: false, Switch, now) { PeerFingerprint = fingerprint };
        IceAgent agent;
        try
        {
            agent = CreateAgent(link, IceRole.Controlled);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or InvalidOperationException)
        {
            Respond(signal, new LinkReject(Id, offer.LinkId, $"cannot open a socket: {e.Message}"));
            _topology.OnLinkDown(peer, failed: true);
            return;
        }
        _links[peer] = link;
        Raise(link, LinkChange.Connecting, "");
        agent.SetRemoteCredentials(new IceCredentials(offer.IceUfrag, offer.IcePassword));
        AddCandidates(agent, offer.Candidates);
        Respond(signal, Describe(link, answer: true));
        agent.Start();
        _ = AcceptAsync(link);
    }

    private IceAgent CreateAgent(PeerLink link, IceRole role)
    {
        var agent = IceAgent.Create(_node.Ice, role, _node.Loop, _node.DataPath.UdpSegmentationOffload);
        link.Agent = agent;
        agent.CandidateGathered += candidate => Trickle(link, candidate);
        _ = GatherAsync(link, agent);
        return agent;
    }

    private async Task GatherAsync(PeerLink link, IceAgent agent)
    {
        try
        {
            await agent.GatherAsync(link.Lifetime.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // the link closed while gathering
        }
    }

    /// <summary>Our offer or answer: fresh ICE credentials of the agent, the candidates so far, fingerprint and MAC.</summary>
    private LinkDescription Describe(PeerLink link, bool answer)
    {
        var agent = link.Agent!;
        lock (link.TrickleGate)
        {
            var credentials = agent.LocalCredentials;
            string[] candidates = [.. agent.LocalCandidates.Where(c => c.Type != IceCandidateType.PeerReflexive).Select(c => c.ToString())];
            link.DescriptionSent = true;
            return answer
                ? new LinkAnswer(Id, link.LinkId, credentials.Ufrag, credentials.Password, candidates, _node.FingerprintText, MacText)
                : new LinkOffer(Id, link.LinkId, credentials.Ufrag, credentials.Password, candidates, _node.FingerprintText, MacText);
        }
    }

    /// <summary>A candidate gathered after our description went out travels on its own (RFC 8838).</summary>
    private void Trickle(PeerLink link, IceCandidate candidate)
    {
        lock (link.TrickleGate)
        {
            if (!link.DescriptionSent) return; // it is in the description
            if (link.HeldCandidates is { } held)
            {
                held.Add(candidate); // the peer has not seen our offer yet: a candidate must not overtake it
                return;
            }
        }
        _ = SendQuietlyAsync(link.PeerNodeId, new LinkCandidate(Id, link.LinkId, candidate.ToString()));
    }

    /// <summary>The peer answered our offer, so it knows the link: candidates held back meanwhile go out now.</summary>
    private void ReleaseCandidates(PeerLink link)
    {
        List<IceCandidate>? held;
        lock (link.TrickleGate)
        {
            held = link.HeldCandidates;
            link.HeldCandidates = null;
        }
        foreach (var candidate in held ?? []) _ = SendQuietlyAsync(link.PeerNodeId, new LinkCandidate(Id, link.LinkId, candidate.ToString()));
    }

    private async Task InitiateAsync(PeerLink link, LinkRoles roles)
    {
        var timings = _node.Timings;
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(link.Lifetime.Token);
        setup.CancelAfter(timings.SetupTimeout);
        try
        {
            link.EdgeRequested = true;
            var edge = await _node.Signaling.RequestAsync(link.PeerNodeId, new EdgeRequest(Id, EdgeTypes.Format(roles)), timings.RequestTimeout, setup.Token).ConfigureAwait(false);
            if (edge is not EdgeResponse { Accepted: true })
                throw new LinkSetupException($"edge refused: {(edge as EdgeResponse)?.Reason ?? edge.GetType().Name}");
            var agent = await _queue.InvokeAsync(() => IsCurrent(link) ? CreateAgent(link, IceRole.Controlling) : null).ConfigureAwait(false)
                ?? throw new OperationCanceledException();
            var offer = (LinkOffer)Describe(link, answer: false);
            var reply = await _node.Signaling.RequestAsync(link.PeerNodeId, offer, timings.RequestTimeout, setup.Token).ConfigureAwait(false);
            if (reply is not LinkAnswer answer)
                throw new LinkSetupException($"offer refused: {(reply as LinkReject)?.Reason ?? reply.GetType().Name}");
            if (!TryReadFingerprint(answer.Fingerprint, out var fingerprint))
                throw new LinkSetupException("the answer's fingerprint is malformed");
            link.PeerFingerprint = fingerprint;
            ReleaseCandidates(link);
            agent.SetRemoteCredentials(new IceCredentials(answer.IceUfrag, answer.IcePassword));
            AddCandidates(agent, answer.Candidates);
            agent.Start();
            await ConnectPathAsync(link, agent, setup.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            ReportSetupFailure(link, e, setup);
        }
    }

    private async Task AcceptAsync(PeerLink link)
    {
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(link.Lifetime.Token);
        setup.CancelAfter(_node.Timings.SetupTimeout);
        try
        {
            await ConnectPathAsync(link, link.Agent!, setup.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            ReportSetupFailure(link, e, setup);
        }
    }

    /// <summary>ICE picks the path, then DTLS authenticates the peer against the signalled fingerprint.</summary>
    private async Task ConnectPathAsync(PeerLink link, IceAgent agent, CancellationToken cancellationToken)
    {
        var pair = await agent.WaitForSelectedPairAsync(cancellationToken).ConfigureAwait(false);
        link.Path = PeerLink.PathOf(pair);
        var tincan = new TinCanLink(agent.Channel, agent.Role == IceRole.Controlling, _node.Identity, link.PeerFingerprint, link, _linkOptions, _node.Time);
        link.Link = tincan;
        tincan.StateChanged += (_, state) => _queue.Post(() => OnLinkState(link, state));
        await tincan.ConnectAsync(cancellationToken).ConfigureAwait(false);
        _queue.Post(() => OnUp(link));
    }

    private void ReportSetupFailure(PeerLink link, Exception e, CancellationTokenSource setup)
    {
        var reason = e switch
        {
            OperationCanceledException when link.Lifetime.IsCancellationRequested => "",
            OperationCanceledException when setup.IsCancellationRequested => $"not up within {_node.Timings.SetupTimeout.TotalSeconds:0.#} s ({link.Phase})",
            _ => e.Message,
        };
        _queue.Post(() =>
        {
            if (!IsCurrent(link)) return; // abandoned or replaced: nothing to report
            _links.Remove(link.Peer);
            Close(link, LinkChange.Failed, reason, notifyPeer: true);
            _topology.OnLinkDown(link.Peer, failed: true);
        });
    }

    private void OnUp(PeerLink link)
    {
        if (!IsCurrent(link) || link.Link is not { } tincan) return;
        var elapsed = _node.Time.GetUtcNow() - link.Started;
        link.Phase = LinkPhase.Up;
        link.Since = _node.Time.GetUtcNow();
        link.Port = new LinkPort(tincan);
        Switch.AddLink(link.SwitchId, link.Port);
        _topology.OnLinkUp(link.Peer);
        LogUp(link.LinkId, link.PeerNodeId, link.Path?.ToString() ?? "?", elapsed.TotalMilliseconds);
        _node.RaiseLink(new LinkEvent(Id, link.PeerNodeId, link.LinkId, LinkChange.Up, link.Path, "", elapsed));
        if (tincan.State == LinkState.Disconnected) OnLinkState(link, LinkState.Disconnected); // fell silent before we got here
    }

    private void OnLinkState(PeerLink link, LinkState state)
    {
        if (!IsCurrent(link)) return;
        var now = _node.Time.GetUtcNow();
        if (state == LinkState.Disconnected && link.Phase == LinkPhase.Up)
        {
            // Stop using it at once: the switch re-floods what it sent this way and re-learns paths around it.
            Switch.RemoveLink(link.SwitchId);
            LogPortRemoved(link.PeerNodeId, link.LinkId, "down");
            link.Phase = LinkPhase.Down;
            link.Since = now;
            link.Started = now;
            Raise(link, LinkChange.Down, link.Link?.Reason ?? "silent");
            if (link.Initiator) StartIceRestart(link);
        }
        else if (state == LinkState.Connected && link.Phase == LinkPhase.Down)
        {
            if (link.Agent?.SelectedPair is { } pair) link.Path = PeerLink.PathOf(pair);
            OnUp(link);
        }
    }

    /// <summary>
    /// The path broke but the peer may live (a NAT dropped its mapping, an address changed): new ICE credentials and
    /// checks on the same agent, signalled as a new offer for the same link. Keys and identity stay. Both ends ask
    /// their STUN servers again, so a NAT that now maps the socket elsewhere yields a server-reflexive candidate the
    /// peer can check directly (without it, a peer behind a filtering NAT is reachable only through a relay).
    /// </summary>
    private void StartIceRestart(PeerLink link)
    {
        if (link.Agent is not { } agent) return;
        link.Restarting = true;
        link.LastRestart = _node.Time.GetUtcNow();
        agent.Restart();
        var offer = (LinkOffer)Describe(link, answer: false);
        LogRestart(link.PeerNodeId);
        _ = RestartAsync(link, agent, offer);
        _ = GatherAsync(link, agent); // a changed mapping is a new server-reflexive candidate, trickled after the offer
    }

    private async Task RestartAsync(PeerLink link, IceAgent agent, LinkOffer offer)
    {
        SignalMessage? reply = null;
        try
        {
            reply = await _node.Signaling.RequestAsync(link.PeerNodeId, offer, _node.Timings.RequestTimeout, link.Lifetime.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SignalingException or OperationCanceledException)
        {
            LogRestartFailed(link.PeerNodeId, e.Message);
        }
        _queue.Post(() =>
        {
            link.Restarting = false;
            if (!IsCurrent(link) || link.Phase != LinkPhase.Down) return;
            if (reply is LinkAnswer answer)
            {
                agent.SetRemoteCredentials(new IceCredentials(answer.IceUfrag, answer.IcePassword));
                AddCandidates(agent, answer.Candidates);
                agent.Start();
                _ = FollowPathAsync(link, agent);
            }
            else if (reply is LinkReject reject)
            {
                _links.Remove(link.Peer);
                Close(link, LinkChange.Failed, $"restart refused: {reject.Reason}", notifyPeer: false);
                _topology.OnLinkDown(link.Peer, failed: true);
            }
        });
    }

    /// <summary>
    /// After a restart the link may carry frames again (the peer's checks brought it back) before this end's ICE
    /// selects the new pair; the pair it then selects is the link's path in status and events.
    /// </summary>
    private async Task FollowPathAsync(PeerLink link, IceAgent agent)
    {
        try
        {
            var pair = await agent.WaitForSelectedPairAsync(link.Lifetime.Token).ConfigureAwait(false);
            _queue.Post(() =>
            {
                if (!IsCurrent(link) || link.Agent != agent) return;
                var path = PeerLink.PathOf(pair);
                if (path == link.Path) return;
                link.Path = path;
                LogPathChanged(link.PeerNodeId, path.ToString());
            });
        }
        catch (Exception e) when (e is OperationCanceledException or IceFailedException or ObjectDisposedException)
        {
            // closed, failed or restarted again: whoever goes on follows the path
        }
    }

    /// <summary>The initiator restarts ICE on a link we answer: follow with new credentials of our own.</summary>
    private void OnRestartOffer(IncomingSignal signal, PeerLink link, LinkOffer offer)
    {
        if (link.Agent is not { } agent || link.Link is null)
        {
            Respond(signal, new LinkReject(Id, offer.LinkId, "the link is still being set up"));
            return;
        }
        agent.Restart();
        agent.SetRemoteCredentials(new IceCredentials(offer.IceUfrag, offer.IcePassword));
        AddCandidates(agent, offer.Candidates);
        Respond(signal, Describe(link, answer: true));
        agent.Start();
        _ = GatherAsync(link, agent); // our mapping may be the one that changed: ask the STUN servers again
        _ = FollowPathAsync(link, agent);
    }

    private void Fail(PeerLink link, string reason)
    {
        _links.Remove(link.Peer);
        Close(link, LinkChange.Failed, reason, notifyPeer: true);
        _topology.OnLinkDown(link.Peer, failed: true);
    }

    /// <summary>Takes the link out of the switch and releases its resources (the caller removed it from the table).</summary>
    private void Close(PeerLink link, LinkChange change, string reason, bool notifyPeer) => _ = CloseAsync(link, change, reason, notifyPeer);

    private async Task CloseAsync(PeerLink link, LinkChange change, string reason, bool notifyPeer)
    {
        var wasUp = link.Port is not null && link.Phase == LinkPhase.Up;
        link.Phase = LinkPhase.Closed;
        if (link.Port is not null)
        {
            Switch.RemoveLink(link.SwitchId);
            LogPortRemoved(link.PeerNodeId, link.LinkId, "closed");
        }
        Raise(link, change, reason);
        if (wasUp || change != LinkChange.Closed || reason.Length > 0) LogClosed(link.PeerNodeId, change, reason);
        await link.Lifetime.CancelAsync().ConfigureAwait(false);
        try
        {
            if (notifyPeer && (link.DescriptionSent || link.EdgeRequested))
                await SendQuietlyAsync(link.PeerNodeId, new LinkTeardown(Id, link.LinkId, reason.Length == 0 ? change.ToString() : reason)).ConfigureAwait(false);
            if (link.Link is { } tincan) await tincan.DisposeAsync().ConfigureAwait(false);
            if (link.Agent is { } agent) await agent.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            link.Lifetime.Dispose();
        }
    }

    private void Raise(PeerLink link, LinkChange change, string reason) =>
        _node.RaiseLink(new LinkEvent(Id, link.PeerNodeId, link.LinkId, change, link.Path, reason, _node.Time.GetUtcNow() - link.Started));

    private void AddCandidates(IceAgent agent, IReadOnlyList<string> candidates)
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
        _ = RespondQuietlyAsync(signal, response);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "link {LinkId} to {Peer} up over {Path} after {Milliseconds:0} ms")]
    private partial void LogUp(string linkId, string peer, string path, double milliseconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "link to {Peer} {Change}: {Reason}")]
    private partial void LogClosed(string peer, LinkChange change, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "switch port to {Peer} removed (link {LinkId} {Why})")]
    private partial void LogPortRemoved(string peer, string linkId, string why);

    [LoggerMessage(Level = LogLevel.Information, Message = "link to {Peer} is silent: restarting ICE")]
    private partial void LogRestart(string peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "link to {Peer} now goes over {Path}")]
    private partial void LogPathChanged(string peer, string path);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE restart offer to {Peer} failed: {Reason}")]
    private partial void LogRestartFailed(string peer, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "signaling to {Peer} failed: {Reason}")]
    private partial void LogSignalFailed(string peer, string reason);
}

/// <summary>A link could not be negotiated (refused, malformed answer).</summary>
internal sealed class LinkSetupException(string message) : Exception(message);
