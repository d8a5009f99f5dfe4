using System.Net;
using Microsoft.Extensions.Logging;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;
using Overlay.Transport;

namespace Overlay.Nat.Ice;

internal sealed partial class IceAgent
{
    private CheckOwner? _checkOwner;
    private Ticker? _ticker;

    private sealed record CheckContext(CandidatePair Pair, bool UseCandidate, bool Consent, int Generation)
    {
        /// <summary>The response came from somewhere else than the check went (RFC 8445 §7.2.5.2.1).</summary>
        public bool NonSymmetric { get; set; }
    }

    /// <summary>One chain of pacing ticks; a chain superseded by a sooner one (<see cref="TickSoon"/>) ends at its next call.</summary>
    private sealed class Ticker(IceAgent agent) : IScheduled
    {
        public void OnDue(long now) => agent.Tick(this, now);
    }

    private sealed class CheckOwner(IceAgent agent) : IStunTransactionOwner
    {
        public bool Accept(StunTransaction transaction, scoped ref StunReader response, SocketAddress? from, StunAddress? viaRelay, object? relay) =>
            agent.AcceptResponse(transaction, ref response, from, viaRelay, relay);

        public void OnResponse(StunTransaction transaction, scoped ref StunReader response) => agent.OnCheckResponse(transaction, ref response);

        public void OnTimeout(StunTransaction transaction) => agent.OnCheckTimeout(transaction);
    }

    private sealed class RequestHandler(IceAgent agent) : IStunRequestHandler
    {
        public void OnStunRequest(scoped ref StunReader request, SocketAddress from, StunAddress? viaRelay, TurnClient? relay) =>
            agent.OnCheckRequest(ref request, from, viaRelay, relay);
    }

    internal CandidatePair? Selected => _selected;

    internal StunEndpoint Endpoint => _endpoint;

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _options.TimeProvider.TimestampFrequency);

    /// <summary>
    /// One pacing interval (Ta, RFC 8445 §6.1.4.2): at most one check, nomination, failure and consent decisions. While
    /// checking it runs every <see cref="IceOptions.Pacing"/>; once connected only when consent is next due, so an idle
    /// link costs a timer every few seconds rather than twenty a second, except while pairs better than the selected
    /// one are still to be checked or nominated (checks go on after the first selection, and a better pair that
    /// succeeds later replaces it).
    /// </summary>
    private void Tick(Ticker ticker, long now)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(ticker, _ticker)) return; // superseded by a sooner chain
            if (State is IceState.Closed or IceState.Failed)
            {
                _ticker = null;
                return;
            }
            if (_started && State == IceState.Checking)
            {
                if (_remoteCredentials is not null) SendNextCheck();
                if (Role == IceRole.Controlling && _nominating is null) Nominate(now);
                var allFailed = _pairs.Count > 0 && _pairs.TrueForAll(p => p.State == CandidatePairState.Failed);
                if (now - _checkingSince > Ticks(_options.ConnectTimeout) || (_endOfRemoteCandidates && allFailed && _nominating is null))
                {
                    SetState(IceState.Failed);
                    _ticker = null;
                    return;
                }
            }
            else if (State == IceState.Connected && _selected is { } selected && _pairs.Contains(selected))
            {
                if (!Consent(now, selected))
                {
                    _ticker = null;
                    return;
                }
                if (ImproveSelected(now, selected))
                {
                    ScheduleTick(ticker, now + Ticks(_options.Pacing));
                    return;
                }
                // Nothing to do until the next consent check, or the deadline of the one outstanding (never sooner than Ta).
                var due = Math.Min(_nextConsentAt, selected.LastConsent + Ticks(_options.ConsentTimeout) + 1);
                ScheduleTick(ticker, Math.Max(due, now + Ticks(_options.Pacing)));
                return;
            }
            ScheduleTick(ticker, now + Ticks(_options.Pacing));
        }
    }

    private void ScheduleTick(Ticker ticker, long due)
    {
        _tickDue = due;
        _endpoint.Scheduler.At(due, ticker);
    }

    /// <summary>Ticks within one pacing interval from now: starts the chain, or replaces one that waits longer (connected).</summary>
    private void TickSoon()
    {
        var due = _endpoint.Scheduler.After(_options.Pacing);
        if (_ticker is not null && _tickDue <= due) return;
        ScheduleTick(_ticker = new Ticker(this), due);
    }

    /// <summary>
    /// Once connected: checks the pairs better than the selected one that wait (trickled late, or found again when UDP
    /// came back), nominates one that succeeded (controlling side), and while the path is relayed over a stream asks
    /// the servers from time to time whether UDP passes again. True while there is such work (ticks stay at Ta).
    /// </summary>
    private bool ImproveSelected(long now, CandidatePair selected)
    {
        var floor = selected.Priority(Role);
        if (_remoteCredentials is not null && (_triggered.Count > 0 || _pairs.Exists(p => p.State == CandidatePairState.Waiting && p.Priority(Role) > floor)))
            SendNextCheck(floor);
        if (Role == IceRole.Controlling && _nominating is null) Nominate(now);
        if (selected.OverStream && now >= _nextUpgradeAt && Interlocked.CompareExchange(ref _upgrading, 1, 0) == 0)
        {
            _nextUpgradeAt = now + Ticks(_options.UpgradeInterval);
            _ = TryUpgradeAsync();
        }
        return _nominating is not null || _triggered.Count > 0 ||
               _pairs.Exists(p => p.State is CandidatePairState.Waiting or CandidatePairState.InProgress && p.Priority(Role) > floor);
    }

    /// <summary>Sends the next triggered check, or else the best waiting pair's above <paramref name="floor"/>.</summary>
    private void SendNextCheck(ulong floor = 0)
    {
        CandidatePair? next = null;
        while (_triggered.Count > 0)
        {
            var p = _triggered.Dequeue();
            if (p.State == CandidatePairState.Waiting && _pairs.Contains(p))
            {
                next = p;
                break;
            }
        }
        if (next is null)
        {
            foreach (var p in _pairs)
                if (p.State == CandidatePairState.Waiting && p.Priority(Role) > floor && (next is null || p.Priority(Role) > next.Priority(Role))) next = p;
        }
        if (next is not null) SendCheck(next, useCandidate: false, consent: false);
    }

    /// <summary>
    /// Regular nomination (RFC 8445 §8.1.1): the best valid pair, once nothing better is pending or the delay passed.
    /// Connected, a valid pair better than the selected one is nominated too, and the peer (this implementation)
    /// moves to it: a relayed path goes direct when a direct pair succeeds later.
    /// </summary>
    private void Nominate(long now)
    {
        var current = _selected is { } s && _pairs.Contains(s) ? s : null;
        CandidatePair? best = null;
        foreach (var p in _pairs)
            if (p.State == CandidatePairState.Succeeded && (best is null || p.Priority(Role) > best.Priority(Role))) best = p;
        if (best is null || (current is not null && best.Priority(Role) <= current.Priority(Role))) return;
        var bestPriority = best.Priority(Role);
        var betterPending = _pairs.Exists(p => p.State is CandidatePairState.Waiting or CandidatePairState.InProgress && p.Priority(Role) > bestPriority);
        if (betterPending && now - _firstValidAt < Ticks(_options.NominationDelay)) return;
        _nominating = best;
        SendCheck(best, useCandidate: true, consent: false);
    }

    /// <summary>RFC 7675: a consent check every ~5 s (randomised), consent lost after 30 s without a response. False when lost.</summary>
    private bool Consent(long now, CandidatePair selected)
    {
        if (now - selected.LastConsent > Ticks(_options.ConsentTimeout))
        {
            LogConsentLost(selected);
            _selected = null;
            SetState(IceState.Failed);
            return false;
        }
        if (now >= _nextConsentAt && selected.ConsentCheck is null && _remoteCredentials is not null)
        {
            SendCheck(selected, useCandidate: false, consent: true);
            _nextConsentAt = NextConsentDue(now, Ticks(_options.ConsentInterval), Ticks(_options.ConsentGrid), Random.Shared);
        }
        return true;
    }

    /// <summary>
    /// When the next consent check is due after one at <paramref name="now"/> (timestamps). RFC 7675 §5.1: "to prevent
    /// synchronization of consent checks, each interval MUST be randomized from between 0.8 and 1.2 times the basic
    /// period" (Tc, <paramref name="interval"/>), and never below 4 s with the default 5 s. The interval is drawn
    /// uniformly among the multiples of <paramref name="grid"/> on the monotonic clock that lie in [0.8 Tc, 1.2 Tc] after
    /// <paramref name="now"/> (with Tc 5 s and a 1 s grid, 2 or 3 instants, 4 to 6 s away): every interval stays within the
    /// RFC's bounds and is random, each link's checks drift against every other link's and against the peer's, and the
    /// checks of a node's links fall on shared instants, so 30 links wake the node about once a second rather than each
    /// on its own six times. Without a grid instant in the range (a grid coarser than 0.4 Tc, or none), anywhere in it.
    /// </summary>
    internal static long NextConsentDue(long now, long interval, long grid, Random random)
    {
        var earliest = now + interval * 4 / 5;
        var latest = now + interval * 6 / 5;
        if (grid > 0)
        {
            var first = earliest + (grid - Modulo(earliest, grid)) % grid; // the first multiple of the grid at or after earliest
            if (first <= latest) return first + grid * random.NextInt64((latest - first) / grid + 1);
        }
        return earliest + (long)((latest - earliest) * random.NextDouble());
    }

    private static long Modulo(long value, long divisor) => (value % divisor + divisor) % divisor;

    private void SendCheck(CandidatePair pair, bool useCandidate, bool consent)
    {
        Span<byte> buffer = stackalloc byte[512];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddBytes(StunAttributeType.Username, _checkUsername);
        // RFC 8445 §7.1.1: PRIORITY is what a peer-reflexive candidate learned from this check would get.
        w.AddUInt32(StunAttributeType.Priority, IceCandidate.ComputePriority(IceCandidateType.PeerReflexive, (int)((pair.Local.Priority >> 8) & 0xFFFF)));
        w.AddUInt64(Role == IceRole.Controlling ? StunAttributeType.IceControlling : StunAttributeType.IceControlled, _tieBreaker);
        if (useCandidate) w.AddFlag(StunAttributeType.UseCandidate);
        w.AddMessageIntegrity(_remoteKey);
        w.AddFingerprint();
        var (sender, destination) = PathOf(pair);
        if (sender is null) return;
        LogCheck(pair, useCandidate, consent);
        var tx = _endpoint.Transactions.Start(w.Written, destination, sender, _checkOwner ??= new CheckOwner(this),
            new CheckContext(pair, useCandidate, consent, _generation), _options.CheckRetransmission);
        if (consent) pair.ConsentCheck = tx;
        else
        {
            pair.Check = tx;
            if (pair.State == CandidatePairState.Waiting) pair.State = CandidatePairState.InProgress;
        }
    }

    private (IStunSender? Sender, SocketAddress Destination) PathOf(CandidatePair pair)
    {
        if (!pair.ViaRelay) return (_endpoint.Sender, pair.RemoteSocketAddress);
        if (pair.Relay is not { } turn) return (null, pair.RemoteSocketAddress);
        return (pair.RelaySender ??= new RelayedStunSender(turn, pair.RemoteAddress), turn.Server);
    }

    private bool AcceptResponse(StunTransaction transaction, scoped ref StunReader response, SocketAddress? from, StunAddress? viaRelay, object? relay)
    {
        lock (_gate)
        {
            if (transaction.State is not CheckContext context || context.Generation != _generation) return false;
            // RFC 8445 §7.2.5.1: a success response must carry integrity made with the peer's password.
            if (response.Class == StunClass.SuccessResponse && !response.VerifyMessageIntegrity(_remoteKey))
            {
                Interlocked.Increment(ref _unauthorized);
                return false;
            }
            var pair = context.Pair;
            context.NonSymmetric = pair.ViaRelay
                ? viaRelay != pair.RemoteAddress || !ReferenceEquals(relay, pair.Relay)
                : from is null || !from.Equals(pair.RemoteSocketAddress);
            return true;
        }
    }

    private void OnCheckResponse(StunTransaction transaction, scoped ref StunReader response)
    {
        lock (_gate)
        {
            if (transaction.State is not CheckContext context || context.Generation != _generation || State == IceState.Closed) return;
            var pair = context.Pair;
            if (context.Consent) pair.ConsentCheck = null;
            else pair.Check = null;
            if (context.UseCandidate) _nominating = null;
            LogCheckResponse(pair, response.Class);
            if (response.Class == StunClass.ErrorResponse)
            {
                if (response.TryGetErrorCode(out var code, out _) && code == 487)
                {
                    // RFC 8445 §7.2.5.1: switch role and check the pair again.
                    Interlocked.Increment(ref _roleConflicts);
                    SwitchRole();
                    if (!context.Consent && pair.State != CandidatePairState.Succeeded)
                    {
                        pair.State = CandidatePairState.Waiting;
                        _triggered.Enqueue(pair);
                    }
                }
                else if (!context.Consent && pair.State != CandidatePairState.Succeeded)
                {
                    pair.State = CandidatePairState.Failed;
                }
                return;
            }
            if (context.NonSymmetric || !response.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped))
            {
                if (!context.Consent) pair.State = CandidatePairState.Failed;
                return;
            }
            var now = _endpoint.Scheduler.Now;
            pair.LastConsent = now;
            pair.RoundTrip = _options.TimeProvider.GetElapsedTime(transaction.StartedAt, now);
            if (context.Consent) return;
            pair.State = CandidatePairState.Succeeded;
            pair.ReportedLocal = LocalFor(mapped, pair);
            if (_firstValidAt == 0) _firstValidAt = now;
            if (pair.ViaRelay) pair.Relay?.AddDataRoute(pair.RemoteAddress, _channel);
            else _endpoint.Mux.AddRoute(pair.RemoteSocketAddress, _channel);
            if (context.UseCandidate || (pair.NominateOnSuccess && Role == IceRole.Controlled)) Select(pair);
        }
    }

    /// <summary>The local candidate the peer saw for this pair; a new peer-reflexive one when unknown (RFC 8445 §7.2.5.3.1).</summary>
    private IceCandidate LocalFor(StunAddress mapped, CandidatePair pair)
    {
        var address = mapped.ToEndPoint();
        var known = _local.Find(c => c.Address.Equals(address));
        if (known is not null) return known;
        if (pair.ViaRelay) return pair.Local;
        var candidate = new IceCandidate(Foundation(IceCandidateType.PeerReflexive, pair.Local.Address.Address, null),
            IceCandidate.ComputePriority(IceCandidateType.PeerReflexive, (int)((pair.Local.Priority >> 8) & 0xFFFF)), address,
            IceCandidateType.PeerReflexive, pair.Local.Address);
        _local.Add(candidate);
        return candidate;
    }

    private void OnCheckTimeout(StunTransaction transaction)
    {
        lock (_gate)
        {
            if (transaction.State is not CheckContext context || context.Generation != _generation) return;
            var pair = context.Pair;
            if (context.Consent)
            {
                pair.ConsentCheck = null;
                return;
            }
            pair.Check = null;
            if (context.UseCandidate) _nominating = null;
            if (pair.State != CandidatePairState.Succeeded) pair.State = CandidatePairState.Failed;
            LogCheckTimeout(pair);
        }
    }

    private void Select(CandidatePair pair)
    {
        if (ReferenceEquals(_selected, pair) && State == IceState.Connected) return;
        var previous = State == IceState.Connected ? _selected : null;
        pair.Nominated = true;
        // RFC 8445 §8.1.1: the selected pair is the highest-priority nominated one. The controlling side nominates better
        // pairs as they succeed, and a nomination sent earlier over a slower path (a relay) may arrive after a better
        // one: it must not move the link back down (the peer stays on the better pair, and the two would part ways).
        if (previous is not null && _pairs.Contains(previous) && pair.Priority(Role) < previous.Priority(Role)) return;
        _selected = pair;
        var now = _endpoint.Scheduler.Now;
        pair.LastConsent = now;
        _nextConsentAt = NextConsentDue(now, Ticks(_options.ConsentInterval), Ticks(_options.ConsentGrid), Random.Shared);
        // Only the selected pair's peer may still reach us through its relay: the permissions for every other address
        // the peer signalled, and on every other relay, lapse (after a restart, pairing installs them again as needed).
        var keep = pair.ViaRelay ? pair.Remote.Address.Address : null;
        _permissions.RemoveWhere(p => p.Turn != pair.Relay || !p.Peer.Equals(keep));
        foreach (var turn in _endpoint.Turns) turn.RetainPermissions(turn == pair.Relay ? keep : null);
        if (pair.Relay is { } relay) _ = relay.BindChannelAsync(pair.RemoteAddress);
        SetState(IceState.Connected);
        var selected = SelectedOf(pair);
        _selectedPair.TrySetResult(selected);
        LogSelected(pair);
        // A later, better pair: the path moved (frames already go the new way; the old pair's stay accepted).
        if (previous is not null && !ReferenceEquals(previous, pair) && _selectedPair.Task.IsCompletedSuccessfully) ReportPath(selected);
    }

    /// <summary>What the selected pair is reported as: the local candidate the peer saw, where it told us (caller holds the lock).</summary>
    private static IceSelectedPair SelectedOf(CandidatePair pair) =>
        new(pair.ReportedLocal ?? pair.Local, pair.Remote, pair.RoundTrip) { OverStream = pair.OverStream };

    /// <summary>Reports a selected path that changed once the first was reported: to waiters and to <see cref="SelectedPairChanged"/>.</summary>
    private void ReportPath(IceSelectedPair selected)
    {
        _selectedPair = NewSelectedPairSource();
        _selectedPair.TrySetResult(selected);
        if (SelectedPairChanged is { } changed) ThreadPool.QueueUserWorkItem(static s => s.changed(s.selected), (changed, selected), preferLocal: false);
    }

    private void SwitchRole()
    {
        Role = Role == IceRole.Controlling ? IceRole.Controlled : IceRole.Controlling;
        _nominating = null;
        LogRoleSwitch(Role);
    }

    /// <summary>Answers a connectivity check (RFC 8445 §7.3) and learns from it; refused checks change nothing.</summary>
    private void OnCheckRequest(scoped ref StunReader request, SocketAddress from, StunAddress? viaRelay, TurnClient? relay)
    {
        lock (_gate)
        {
            if (State == IceState.Closed) return;
            if (request.Method != StunMethod.Binding)
            {
                Interlocked.Increment(ref _badRequests);
                return;
            }
            // RFC 8445 §7.2.2: checks carry FINGERPRINT; without it this is not an ICE check.
            if (!request.HasFingerprint)
            {
                Interlocked.Increment(ref _badRequests);
                return;
            }
            if (!request.TryGetAttribute(StunAttributeType.Username, out var username) || !request.HasMessageIntegrity)
            {
                Interlocked.Increment(ref _badRequests);
                Respond(ref request, from, viaRelay, relay, 400, "Bad Request", authenticated: false);
                return;
            }
            if (!username.StartsWith(_expectedUsernamePrefix) || !request.VerifyMessageIntegrity(_localKey))
            {
                Interlocked.Increment(ref _unauthorized);
                Respond(ref request, from, viaRelay, relay, 401, "Unauthorized", authenticated: false);
                return;
            }
            if (request.UnknownComprehensionRequiredCount > 0)
            {
                Interlocked.Increment(ref _unknownAttributes);
                Respond(ref request, from, viaRelay, relay, 420, "Unknown Attribute", authenticated: true);
                return;
            }
            // RFC 8445 §7.3.1.1: role conflict, decided by the tie-breakers.
            if (Role == IceRole.Controlling && request.TryGetUInt64(StunAttributeType.IceControlling, out var theirs))
            {
                Interlocked.Increment(ref _roleConflicts);
                if (_tieBreaker >= theirs)
                {
                    Respond(ref request, from, viaRelay, relay, 487, "Role Conflict", authenticated: true);
                    return;
                }
                SwitchRole();
            }
            else if (Role == IceRole.Controlled && request.TryGetUInt64(StunAttributeType.IceControlled, out theirs))
            {
                Interlocked.Increment(ref _roleConflicts);
                if (_tieBreaker < theirs)
                {
                    Respond(ref request, from, viaRelay, relay, 487, "Role Conflict", authenticated: true);
                    return;
                }
                SwitchRole();
            }
            var source = viaRelay ?? new StunAddress(UdpMux.ToEndPoint(from));
            Respond(ref request, from, viaRelay, relay, 0, null, authenticated: true, source);
            LogCheckReceived(source, viaRelay is not null);
            LearnFromCheck(ref request, source, relay);
        }
    }

    private void LearnFromCheck(scoped ref StunReader request, StunAddress source, TurnClient? relay)
    {
        var address = source.ToEndPoint();
        var remote = _remote.Find(c => c.Address.Equals(address));
        if (remote is null)
        {
            if (!RoomForRemote()) return;
            // RFC 8445 §7.3.1.3: a peer-reflexive remote candidate with the request's PRIORITY.
            request.TryGetUInt32(StunAttributeType.Priority, out var priority);
            remote = new IceCandidate(Foundation(IceCandidateType.PeerReflexive, address.Address, null),
                priority != 0 ? priority : IceCandidate.ComputePriority(IceCandidateType.PeerReflexive, 65535), address, IceCandidateType.PeerReflexive);
            _remote.Add(remote);
            if (relay is null) EnsurePermissions(address);
        }
        var local = relay is not null ? RelayCandidateOf(relay) : _hostBase.GetValueOrDefault(address.AddressFamily);
        if (local is null) return;
        var pair = FindOrAddPair(local, remote, relay);
        // The check proved the sender knows our password: what it sends on this pair is taken from now on, so frames
        // the peer sends once it moves here are not lost while our own check on the pair is still under way.
        if (relay is not null) relay.AddDataRoute(source, _channel);
        else _endpoint.Mux.AddRoute(pair.RemoteSocketAddress, _channel);
        // RFC 8445 §7.3.1.4: triggered check.
        if (pair.State == CandidatePairState.Failed) pair.State = CandidatePairState.Waiting;
        if (pair.State == CandidatePairState.Waiting && !_triggered.Contains(pair))
        {
            _triggered.Enqueue(pair);
            if (State == IceState.Connected) TickSoon(); // connected, the next tick may be seconds away
        }
        if (request.HasAttribute(StunAttributeType.UseCandidate) && Role == IceRole.Controlled)
        {
            // RFC 8445 §7.3.1.5: nominated; selected once our own check on the pair has succeeded.
            if (pair.State == CandidatePairState.Succeeded) Select(pair);
            else pair.NominateOnSuccess = true;
        }
    }

    private void Respond(scoped ref StunReader request, SocketAddress from, StunAddress? viaRelay, TurnClient? relay, int errorCode, string? reason,
        bool authenticated, StunAddress mapped = default)
    {
        Span<byte> buffer = stackalloc byte[256];
        var w = new StunWriter(buffer, StunMethod.Binding, errorCode == 0 ? StunClass.SuccessResponse : StunClass.ErrorResponse, request.TransactionId);
        if (errorCode == 0) w.AddXorAddress(StunAttributeType.XorMappedAddress, mapped);
        else w.AddErrorCode(errorCode, reason!);
        if (errorCode == 420)
        {
            Span<ushort> unknown = stackalloc ushort[4];
            w.AddUnknownAttributes(unknown[..request.CopyUnknownComprehensionRequired(unknown)]);
        }
        if (authenticated) w.AddMessageIntegrity(_localKey);
        w.AddFingerprint();
        if (w.Overflowed) return;
        if (viaRelay is { } peer) relay?.SendTo(w.Written, peer);
        else _endpoint.Mux.Send(w.Written, from);
    }

    [LoggerMessage(Level = LogLevel.Trace, Message = "ICE check on {Pair} (nominate {UseCandidate}, consent {Consent})")]
    private partial void LogCheck(CandidatePair pair, bool useCandidate, bool consent);

    [LoggerMessage(Level = LogLevel.Trace, Message = "ICE check received from {Source} (via relay {ViaRelay})")]
    private partial void LogCheckReceived(StunAddress source, bool viaRelay);

    [LoggerMessage(Level = LogLevel.Trace, Message = "ICE {Class} on {Pair}")]
    private partial void LogCheckResponse(CandidatePair pair, StunClass @class);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE check timed out on {Pair}")]
    private partial void LogCheckTimeout(CandidatePair pair);

    [LoggerMessage(Level = LogLevel.Information, Message = "ICE consent lost on {Pair}")]
    private partial void LogConsentLost(CandidatePair pair);
}
