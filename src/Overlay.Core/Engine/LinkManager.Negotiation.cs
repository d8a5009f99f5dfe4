using Microsoft.Extensions.Logging;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Topology;

namespace Overlay.Engine;

// Negotiation: edge request → offer/answer → ICE (trickled candidates) → DTLS → switch port, and the ICE restart of a
// link that fell silent. The async methods run beside the control queue and post back what they found.
internal sealed partial class LinkManager
{
    /// <summary>The peer's offer passed every check: answer it and connect.</summary>
    private void Accept(IncomingSignal signal, UInt128 peer, LinkOffer offer, CertificateFingerprint fingerprint, DateTimeOffset now)
    {
        var link = new PeerLink(peer, offer.LinkId, initiator: false, _switch, now);
        link.ExpectFingerprint(fingerprint);
        link.Advertised(offer.Mac);
        ILinkPath agent;
        try
        {
            agent = CreatePath(link, IceRole.Controlled);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or InvalidOperationException)
        {
            Respond(signal, new LinkReject(_overlayId, offer.LinkId, $"cannot open a socket: {e.Message}"));
            _topology.OnLinkDown(peer, failed: true);
            return;
        }
        _links[peer] = link;
        link.Setup = _node.Telemetry?.StartSetup(_overlayId, link.PeerNodeId, link.LinkId, initiator: false);
        Raise(link, LinkChange.Connecting, "");
        agent.SetRemoteCredentials(new IceCredentials(offer.IceUfrag, offer.IcePassword));
        AddCandidates(agent, offer.Candidates);
        Respond(signal, Describe(link, answer: true));
        agent.Start();
        _work.Track(AcceptAsync(link));
    }

    private ILinkPath CreatePath(PeerLink link, IceRole role)
    {
        var agent = _paths.Create(role);
        link.UsePath(agent);
        agent.CandidateGathered += candidate => Trickle(link, candidate);
        agent.SelectedPairChanged += pair => _queue.Post(() =>
        {
            if (IsCurrent(link) && link.Agent == agent && link.Phase != LinkPhase.Down && link.RouteOver(pair))
                LogPathChanged(link.PeerNodeId, link.Path!.ToString());
        });
        _work.Track(GatherAsync(link, agent));
        return agent;
    }

    private async Task GatherAsync(PeerLink link, ILinkPath agent)
    {
        try
        {
            await agent.GatherAsync(link.Lifetime.Token).ConfigureAwait(false);
            link.Mark("gathered", _node.Time.GetUtcNow());
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // the link closed while gathering
        }
    }

    /// <summary>Our offer or answer: fresh ICE credentials of the path, the candidates so far, fingerprint and MAC.</summary>
    private LinkDescription Describe(PeerLink link, bool answer)
    {
        var agent = link.Agent!;
        return link.Describe<LinkDescription>(() =>
        {
            var credentials = agent.LocalCredentials;
            string[] candidates = [.. agent.LocalCandidates.Where(c => c.Type != IceCandidateType.PeerReflexive).Select(c => c.ToString())];
            return answer
                ? new LinkAnswer(_overlayId, link.LinkId, credentials.Ufrag, credentials.Password, candidates, _node.FingerprintText, _macText)
                : new LinkOffer(_overlayId, link.LinkId, credentials.Ufrag, credentials.Password, candidates, _node.FingerprintText, _macText);
        }, _node.Time.GetUtcNow());
    }

    /// <summary>A candidate gathered after our description went out travels on its own (RFC 8838), once the peer knows the link.</summary>
    private void Trickle(PeerLink link, IceCandidate candidate)
    {
        if (link.RouteCandidate(candidate) == CandidateRoute.Trickle) Send(link, new LinkCandidate(_overlayId, link.LinkId, candidate.ToString()));
    }

    /// <summary>The peer answered our offer, so it knows the link: candidates held back meanwhile go out now.</summary>
    private void ReleaseCandidates(PeerLink link)
    {
        foreach (var candidate in link.TakeHeldCandidates(_node.Time.GetUtcNow())) Send(link, new LinkCandidate(_overlayId, link.LinkId, candidate.ToString()));
    }

    private async Task InitiateAsync(PeerLink link, LinkRoles roles)
    {
        var timings = _node.Timings;
        using var timeout = new CancellationTokenSource(timings.SetupTimeout, _node.Time);
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(link.Lifetime.Token, timeout.Token);
        try
        {
            // The offer asks for the edge itself (it carries the edge kind): no edge request before it. Candidates
            // gathered until it goes out travel in it, later ones after the answer.
            var agent = await _queue.InvokeAsync(() => IsCurrent(link) ? CreatePath(link, IceRole.Controlling) : null).ConfigureAwait(false)
                ?? throw new OperationCanceledException();
            var offer = (LinkOffer)Describe(link, answer: false) with { EdgeType = EdgeTypes.Format(roles) };
            link.Mark("offer", _node.Time.GetUtcNow());
            var reply = await _node.Signaling.RequestAsync(link.PeerNodeId, offer, timings.RequestTimeout, setup.Token).ConfigureAwait(false);
            if (reply is not LinkAnswer answer)
                throw new LinkSetupException($"offer refused: {(reply as LinkReject)?.Reason ?? reply.GetType().Name}");
            if (!TryReadFingerprint(answer.Fingerprint, out var fingerprint))
                throw new LinkSetupException("the answer's fingerprint is malformed");
            link.ExpectFingerprint(fingerprint);
            link.Setup?.AddEvent(new("offer.answered"));
            link.Mark("answer", _node.Time.GetUtcNow());
            link.Advertised(answer.Mac);
            ReleaseCandidates(link);
            agent.SetRemoteCredentials(new IceCredentials(answer.IceUfrag, answer.IcePassword));
            AddCandidates(agent, answer.Candidates);
            agent.Start();
            await ConnectPathAsync(link, agent, setup.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            ReportSetupFailure(link, e, timeout);
        }
    }

    private async Task AcceptAsync(PeerLink link)
    {
        using var timeout = new CancellationTokenSource(_node.Timings.SetupTimeout, _node.Time);
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(link.Lifetime.Token, timeout.Token);
        try
        {
            await ConnectPathAsync(link, link.Agent!, setup.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            ReportSetupFailure(link, e, timeout);
        }
    }

    /// <summary>ICE picks the path, then DTLS authenticates the peer against the signalled fingerprint.</summary>
    private async Task ConnectPathAsync(PeerLink link, ILinkPath agent, CancellationToken cancellationToken)
    {
        var pair = await agent.WaitForSelectedPairAsync(cancellationToken).ConfigureAwait(false);
        link.RouteOver(pair);
        link.Setup?.AddEvent(new("ice.selected", tags: new() { ["overlay.path"] = PeerLink.PathOf(pair).ToString() }));
        link.Mark("ice", _node.Time.GetUtcNow());
        // The peer's key must own the node ID it signals under: a member claiming another's ID cannot complete the link.
        var tincan = new TinCanLink(agent.Channel, agent.Role == IceRole.Controlling, _node.Identity, link.PeerFingerprint, link, _linkOptions, _node.Time,
            link.PeerNodeId);
        link.UseTinCan(tincan);
        tincan.StateChanged += (_, state) => _queue.Post(() => OnLinkState(link, state));
        await tincan.ConnectAsync(cancellationToken, pair.RoundTrip).ConfigureAwait(false);
        link.Setup?.AddEvent(new("dtls.authenticated"));
        link.Mark("dtls", _node.Time.GetUtcNow());
        _queue.Post(() => OnUp(link));
    }

    private void ReportSetupFailure(PeerLink link, Exception e, CancellationTokenSource timeout)
    {
        var reason = e switch
        {
            OperationCanceledException when link.Lifetime.IsCancellationRequested => "",
            OperationCanceledException when timeout.IsCancellationRequested => $"not up within {_node.Timings.SetupTimeout.TotalSeconds:0.#} s ({link.Phase})",
            _ => e.Message,
        };
        _queue.Post(() =>
        {
            if (IsCurrent(link)) End(link, LinkCloseReason.SetupFailed, reason); // else abandoned or replaced: nothing to report
        });
    }

    private void OnUp(PeerLink link)
    {
        if (!IsCurrent(link) || link.Link is not { } tincan) return;
        var now = _node.Time.GetUtcNow();
        var elapsed = now - link.Started;
        if (!link.TryMoveTo(PeerLinkState.Up, now)) return;
        (link.Agent as IcePath)?.OnUp(); // spread the working links over the loops
        var port = new LinkPort(tincan);
        link.UsePort(port);
        _switch.AddLink(link.SwitchId, port);
        // The peer is authenticated now: the MAC it advertised is its own, and no other member's frames teach it.
        if (link.PeerMac is { } mac) _switch.BindAddress(link.SwitchId, mac);
        _topology.OnLinkUp(link.Peer);
        link.Setup?.SetTag("overlay.path.type", NodeTelemetry.PathType(link.Path));
        link.EndSetup(System.Diagnostics.ActivityStatusCode.Ok, "");
        LogUp(link.LinkId, link.PeerNodeId, link.Path?.ToString() ?? "?", elapsed.TotalMilliseconds, link.Initiator ? "it was asked for" : "the offer came", link.Phases);
        _node.RaiseLink(new LinkEvent(_overlayId, link.PeerNodeId, link.LinkId, LinkChange.Up, link.Path, "", elapsed));
        if (tincan.State == LinkState.Disconnected) OnLinkState(link, LinkState.Disconnected); // fell silent before we got here
    }

    private void OnLinkState(PeerLink link, LinkState state)
    {
        if (!IsCurrent(link)) return;
        if (state == LinkState.Ended)
        {
            End(link, LinkCloseReason.Goodbye);
            return;
        }
        if (state == LinkState.Disconnected && link.State == PeerLinkState.Up)
        {
            // Stop using it at once: the switch re-floods what it sent this way and re-learns paths around it.
            _switch.RemoveLink(link.SwitchId);
            LogPortRemoved(link.PeerNodeId, link.LinkId, "down");
            link.TryMoveTo(PeerLinkState.Down, _node.Time.GetUtcNow());
            Raise(link, LinkChange.Down, link.Link?.Reason ?? "silent");
            if (link.Initiator) StartIceRestart(link);
        }
        else if (state == LinkState.Connected && link.Phase == LinkPhase.Down)
        {
            if (link.Agent?.SelectedPair is { } pair) link.RouteOver(pair);
            OnUp(link);
        }
    }

    /// <summary>
    /// The path broke but the peer may live (a NAT dropped its mapping, an address changed): new ICE credentials and
    /// checks on the same path, signalled as a new offer for the same link. Keys and identity stay. Both ends ask
    /// their STUN servers again, so a NAT that now maps the socket elsewhere yields a server-reflexive candidate the
    /// peer can check directly (without it, a peer behind a filtering NAT is reachable only through a relay).
    /// </summary>
    private void StartIceRestart(PeerLink link)
    {
        if (link.Agent is not { } agent || !link.TryMoveTo(PeerLinkState.Restarting, _node.Time.GetUtcNow())) return;
        agent.Restart();
        var offer = (LinkOffer)Describe(link, answer: false);
        LogRestart(link.PeerNodeId);
        _work.Track(RestartAsync(link, agent, offer));
        _work.Track(GatherAsync(link, agent)); // a changed mapping is a new server-reflexive candidate, trickled after the offer
    }

    private async Task RestartAsync(PeerLink link, ILinkPath agent, LinkOffer offer)
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
            if (link.State == PeerLinkState.Restarting) link.TryMoveTo(PeerLinkState.Down, _node.Time.GetUtcNow());
            if (!IsCurrent(link) || link.Phase != LinkPhase.Down) return;
            if (reply is LinkAnswer answer)
            {
                agent.SetRemoteCredentials(new IceCredentials(answer.IceUfrag, answer.IcePassword));
                AddCandidates(agent, answer.Candidates);
                agent.Start();
                _work.Track(FollowPathAsync(link, agent));
            }
            else if (reply is LinkReject reject)
            {
                End(link, LinkCloseReason.RestartRefused, reject.Reason);
            }
        });
    }

    /// <summary>
    /// After a restart the link may carry frames again (the peer's checks brought it back) before this end's ICE
    /// selects the new pair; the pair it then selects is the link's path in status and events.
    /// </summary>
    private async Task FollowPathAsync(PeerLink link, ILinkPath agent)
    {
        try
        {
            var pair = await agent.WaitForSelectedPairAsync(link.Lifetime.Token).ConfigureAwait(false);
            _queue.Post(() =>
            {
                if (!IsCurrent(link) || link.Agent != agent || !link.RouteOver(pair)) return;
                LogPathChanged(link.PeerNodeId, link.Path!.ToString());
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
            Respond(signal, new LinkReject(_overlayId, offer.LinkId, "the link is still being set up"));
            return;
        }
        agent.Restart();
        agent.SetRemoteCredentials(new IceCredentials(offer.IceUfrag, offer.IcePassword));
        AddCandidates(agent, offer.Candidates);
        Respond(signal, Describe(link, answer: true));
        agent.Start();
        _work.Track(GatherAsync(link, agent)); // our mapping may be the one that changed: ask the STUN servers again
        _work.Track(FollowPathAsync(link, agent));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "link {LinkId} to {Peer} up over {Path} after {Milliseconds:0} ms (ms since {From}: {Phases})")]
    private partial void LogUp(string linkId, string peer, string path, double milliseconds, string from, string phases);

    [LoggerMessage(Level = LogLevel.Information, Message = "link to {Peer} is silent: restarting ICE")]
    private partial void LogRestart(string peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "link to {Peer} now goes over {Path}")]
    private partial void LogPathChanged(string peer, string path);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE restart offer to {Peer} failed: {Reason}")]
    private partial void LogRestartFailed(string peer, string reason);
}

/// <summary>A link could not be negotiated (refused, malformed answer).</summary>
internal sealed class LinkSetupException(string message) : Exception(message);
