using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Overlay.Signaling;

/// <summary>
/// What every signaling transport shares: the peer tables that follow presence, the membership checks on
/// inbound messages, request/response correlation with timeouts, counters and events. A transport
/// (XMPP, in-process hub) only moves payloads and presence and tells this class who is in the roster.
/// </summary>
internal abstract class SignalingChannelBase : ISignalingChannel
{
    private const int IncomingCapacity = 256;
    private const int WatcherCapacity = 1024;

    private readonly object _gate = new();
    private readonly PeerTable _peers;
    private readonly string[] _overlays;
    private readonly ConcurrentDictionary<string, PendingRequest> _pending = new(StringComparer.Ordinal);
    private readonly Channel<IncomingSignal> _incoming = Channel.CreateBounded<IncomingSignal>(
        new BoundedChannelOptions(IncomingCapacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    private readonly List<Channel<PeerEvent>> _watchers = [];
    private readonly TimeSpan _defaultTimeout;
    private SignalingState _state = SignalingState.Disconnected;
    private int _disposed;
    private long _accepted, _responsesMatched, _notInRoster, _unservedOverlay, _unknownType, _malformed, _spoofed, _unknownPeer, _unmatched, _queueFull, _timedOut, _notInGroup, _claimRefused;
    private readonly IReadOnlyDictionary<string, IReadOnlyList<string>> _overlayGroups;
    private readonly Dictionary<(string Overlay, string Account), (string NodeId, string Address)> _known = []; // see Remember
    private readonly HashSet<string> _ownIdClaimedBy = new(StringComparer.Ordinal); // addresses announcing our node ID

    private sealed record PendingRequest(TaskCompletionSource<SignalMessage> Completion, string PeerNodeId, string Address, SignalMessage Request);

    private protected SignalingChannelBase(string nodeId, IEnumerable<string> overlays, TimeSpan defaultRequestTimeout, TimeProvider? timeProvider, ILogger? logger,
        IReadOnlyDictionary<string, IReadOnlyList<string>>? overlayGroups = null)
    {
        _overlayGroups = overlayGroups ?? new Dictionary<string, IReadOnlyList<string>>();
        if (!Switching.NodeId.IsValid(nodeId)) throw new ArgumentException($"NodeId must be 32 lower-case hex characters, got '{nodeId}'", nameof(nodeId));
        ArgumentNullException.ThrowIfNull(overlays);
        _overlays = overlays.Distinct(StringComparer.Ordinal).ToArray();
        if (_overlays.Length == 0 || _overlays.Any(string.IsNullOrEmpty))
            throw new ArgumentException("Overlays must name at least one overlay, none empty", nameof(overlays));
        if (defaultRequestTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(defaultRequestTimeout), "RequestTimeout must be positive");
        NodeId = nodeId;
        _peers = new PeerTable(_overlays, AccountOf, IsMemberOf);
        _defaultTimeout = defaultRequestTimeout;
        TimeProvider = timeProvider ?? TimeProvider.System;
        Logger = logger ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public string NodeId { get; }

    /// <inheritdoc />
    public IReadOnlyCollection<string> Overlays => _overlays;

    /// <summary>This node's own signaling address (full JID for XMPP) once connected.</summary>
    public abstract string? LocalAddress { get; }

    /// <inheritdoc />
    public SignalingState State { get { lock (_gate) return _state; } }

    /// <inheritdoc />
    public event EventHandler<SignalingStateChangedEventArgs>? StateChanged;

    /// <inheritdoc />
    public event EventHandler<PeerEvent>? PeerChanged;

    private protected TimeProvider TimeProvider { get; }

    private protected ILogger Logger { get; }

    /// <inheritdoc />
    public SignalingCounters Counters => new(
        Interlocked.Read(ref _accepted), Interlocked.Read(ref _responsesMatched), Interlocked.Read(ref _notInRoster),
        Interlocked.Read(ref _unservedOverlay), Interlocked.Read(ref _unknownType), Interlocked.Read(ref _malformed),
        Interlocked.Read(ref _spoofed), Interlocked.Read(ref _unknownPeer), Interlocked.Read(ref _unmatched), Interlocked.Read(ref _queueFull), Interlocked.Read(ref _timedOut),
        Interlocked.Read(ref _notInGroup), Interlocked.Read(ref _claimRefused));

    /// <inheritdoc />
    public abstract Task ConnectAsync(CancellationToken cancellationToken = default);

    /// <inheritdoc />
    public IReadOnlyDictionary<string, string> GetPeers(string overlayId)
    {
        lock (_gate) return _peers.Snapshot(overlayId);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<PeerEvent> WatchPeersAsync(CancellationToken cancellationToken = default)
    {
        // Registered now, not at the first MoveNextAsync, so no event between this call and the first await is lost.
        var channel = Channel.CreateBounded<PeerEvent>(new BoundedChannelOptions(WatcherCapacity) { FullMode = BoundedChannelFullMode.DropOldest });
        lock (_watchers) _watchers.Add(channel);
        return Drain(channel, cancellationToken);
    }

    private async IAsyncEnumerable<PeerEvent> Drain(Channel<PeerEvent> channel, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false)) yield return e;
        }
        finally
        {
            lock (_watchers) _watchers.Remove(channel);
        }
    }

    /// <inheritdoc />
    public IAsyncEnumerable<IncomingSignal> ReadIncomingAsync(CancellationToken cancellationToken = default)
        => _incoming.Reader.ReadAllAsync(cancellationToken);

    /// <inheritdoc />
    public Task<SignalMessage> RequestAsync(string peerNodeId, SignalMessage request, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!SignalCodec.IsRequest(request)) throw new ArgumentException($"{request.GetType().Name} is not a request type", nameof(request));
        var address = ResolvePeer(peerNodeId, request.OverlayId);
        return RequestToAddressAsync(address, peerNodeId, request, timeout, cancellationToken);
    }

    /// <inheritdoc />
    public Task SendAsync(string peerNodeId, SignalMessage notification, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(notification);
        if (!SignalCodec.IsNotification(notification)) throw new ArgumentException($"{notification.GetType().Name} is not a notification type", nameof(notification));
        var address = ResolvePeer(peerNodeId, notification.OverlayId);
        var cid = NewCorrelationId();
        return SendPayloadAsync(address, cid, SignalCodec.Encode(NodeId, cid, notification), cancellationToken);
    }

    private string ResolvePeer(string peerNodeId, string overlayId)
    {
        if (!_peers.Serves(overlayId)) throw new SignalingException($"this node does not serve overlay '{overlayId}'");
        lock (_gate)
        {
            return _peers.AddressOf(overlayId, peerNodeId)
                ?? throw new SignalingException($"peer {peerNodeId} is not in the peer table of overlay '{overlayId}'");
        }
    }

    /// <summary>Sends a request to an explicit address (tests use it to act as a peer the table does not know).</summary>
    internal async Task<SignalMessage> RequestToAddressAsync(string address, string peerNodeId, SignalMessage request, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var cid = NewCorrelationId();
        var pending = new PendingRequest(new TaskCompletionSource<SignalMessage>(TaskCreationOptions.RunContinuationsAsynchronously), peerNodeId, address, request);
        _pending[cid] = pending;
        try
        {
            await SendPayloadAsync(address, cid, SignalCodec.Encode(NodeId, cid, request), cancellationToken).ConfigureAwait(false);
            var limit = timeout ?? _defaultTimeout;
            try
            {
                return await pending.Completion.Task.WaitAsync(limit, TimeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Interlocked.Increment(ref _timedOut);
                throw new SignalingTimeoutException($"no response from {peerNodeId} ({address}) to {request.GetType().Name} within {limit.TotalSeconds:0.###} s");
            }
        }
        finally
        {
            _pending.TryRemove(cid, out _);
        }
    }

    private static string NewCorrelationId() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));

    /// <summary>Sends one payload to an address. <paramref name="correlationId"/> lets the transport report a bounce.</summary>
    private protected abstract Task SendPayloadAsync(string address, string correlationId, string payload, CancellationToken cancellationToken);

    /// <summary>True when the address (its account) is in this node's roster.</summary>
    private protected abstract bool IsRosterMember(string address);

    /// <summary>The account an address belongs to (the bare JID of an XMPP full JID).</summary>
    private protected abstract string AccountOf(string address);

    /// <summary>The roster groups the address's account is in, as this node's roster shows them.</summary>
    private protected abstract IReadOnlyCollection<string> RosterGroupsOf(string address);

    /// <summary>
    /// Membership is per overlay: where an overlay names roster groups, only contacts in one of them are its members;
    /// an overlay that names none takes every roster contact (one overlay per account, as before).
    /// </summary>
    private bool IsMemberOf(string address, string overlayId)
    {
        if (!_overlayGroups.TryGetValue(overlayId, out var groups) || groups.Count == 0) return true;
        foreach (var group in RosterGroupsOf(address))
            if (groups.Contains(group, StringComparer.Ordinal)) return true;
        return false;
    }

    /// <summary>
    /// The roster (or a contact's groups) changed, or was read again after a reconnect: peers are listed in, or taken out
    /// of, the overlays they may be in, and a node known from before whose account is no longer a member of an overlay is
    /// revoked there, even if its presence was lost meanwhile (its links may still be up).
    /// </summary>
    private protected void OnRosterChanged()
    {
        List<PeerEvent> events;
        lock (_gate)
        {
            events = _peers.Reevaluate();
            foreach (var (key, (nodeId, address)) in _known.ToArray())
            {
                var overlay = key.Overlay;
                if (IsRosterMember(address) && IsMemberOf(address, overlay)) continue;
                _known.Remove(key);
                if (!events.Exists(e => e.OverlayId == overlay && e.NodeId == nodeId && e.Change == PeerChange.Revoked))
                    events.Add(new PeerEvent(overlay, nodeId, address, PeerChange.Revoked));
            }
        }
        Raise(events);
    }

    /// <summary>
    /// The last node each account listed in each overlay, with its address: presence may go (a server restart, our own
    /// reconnect) while links stay, so revocation must still reach nodes no longer listed. Keyed by account and overlay
    /// (an account has one node per overlay), so the table is bounded by the roster.
    /// </summary>
    private void Remember(List<PeerEvent> events)
    {
        foreach (var e in events)
        {
            var key = (e.OverlayId, AccountOf(e.Address));
            if (e.Change == PeerChange.Revoked) _known.Remove(key);
            else if (e.Change == PeerChange.Joined) _known[key] = (e.NodeId, e.Address);
        }
    }

    /// <summary>The announcement payload this node puts in its presence.</summary>
    private protected string AnnouncementPayload => SignalCodec.EncodeAnnounce(NodeId, _overlays);

    private protected void SetState(SignalingState state, Exception? error)
    {
        lock (_gate)
        {
            if (_state == state && error is null) return;
            if (_state == SignalingState.Closed) return;
            _state = state;
        }
        try
        {
            StateChanged?.Invoke(this, new SignalingStateChangedEventArgs(state, error));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Logger.LogWarning(ex, "a StateChanged handler threw");
        }
    }

    /// <summary>An address sent presence available, with the signal element's text or null when it had none.</summary>
    private protected void OnPresenceAvailable(string address, string? payload)
    {
        if (!IsRosterMember(address)) { Drop(ref _notInRoster, "not-in-roster"); return; }
        if (payload is null) { OnPresenceUnavailable(address); return; }
        var result = SignalCodec.TryDecode(payload, out var env);
        if (result != SignalDecodeError.None || env.AnnouncedOverlays is null) { Drop(ref _malformed, "malformed"); return; }
        if (env.NodeId == NodeId)
        {
            if (address != LocalAddress) OnOwnIdAnnounced(address);
            return;
        }
        var refused = env.AnnouncedOverlays.Count(o => _peers.Serves(o) && !IsMemberOf(address, o));
        for (var i = 0; i < refused; i++) Drop(ref _notInGroup, "not-in-overlay-group");
        List<PeerEvent> events;
        long refusedClaims;
        lock (_gate)
        {
            var before = _peers.RefusedClaims;
            events = _peers.Announce(address, env.NodeId, env.AnnouncedOverlays);
            refusedClaims = _peers.RefusedClaims - before;
        }
        if (refusedClaims > 0)
        {
            Drop(ref _claimRefused, "node-id-claimed");
            Logger.LogWarning("{Address} claims node {NodeId}, which another account holds (or its account already has another node in the overlay): refused",
                address, env.NodeId);
        }
        Raise(events);
    }

    /// <inheritdoc />
    public IReadOnlyCollection<string> NodeIdConflicts { get { lock (_gate) return [.. _ownIdClaimedBy]; } }

    /// <summary>Another address announces this node's ID: said once per address, and shown in status until it goes.</summary>
    private void OnOwnIdAnnounced(string address)
    {
        bool added;
        lock (_gate) added = _ownIdClaimedBy.Add(address);
        if (added)
            Logger.LogError("node ID conflict: {Address} also announces this node's ID {NodeId} (a copied key?); each peer keeps the node it "
                + "listed first and refuses the other, so this node may be refused", address, NodeId);
    }

    private protected void OnPresenceUnavailable(string address)
    {
        List<PeerEvent> events;
        lock (_gate)
        {
            _ownIdClaimedBy.Remove(address);
            events = _peers.Remove(address);
        }
        Raise(events);
    }

    /// <summary>Forgets peers whose address matches (e.g. its account left the roster).</summary>
    private protected void ForgetPeers(Func<string, bool> addressPredicate, PeerChange change)
    {
        List<PeerEvent> events;
        lock (_gate) events = _peers.RemoveWhere(addressPredicate, change);
        Raise(events);
    }

    /// <summary>The transport could not deliver the payload sent with <paramref name="correlationId"/>.</summary>
    private protected void OnDeliveryFailed(string correlationId, string reason)
    {
        if (_pending.TryGetValue(correlationId, out var p))
            p.Completion.TrySetException(new SignalingException($"request to {p.PeerNodeId} ({p.Address}) could not be delivered: {reason}"));
    }

    /// <summary>A payload arrived from an address. Runs every check before anything is acted on.</summary>
    private protected void OnPayload(string fromAddress, string payload)
    {
        if (!IsRosterMember(fromAddress)) { Drop(ref _notInRoster, "not-in-roster"); return; }
        switch (SignalCodec.TryDecode(payload, out var env))
        {
            case SignalDecodeError.UnknownType: Drop(ref _unknownType, "unknown-type"); return;
            case SignalDecodeError.Malformed: Drop(ref _malformed, "malformed"); return;
        }
        var message = env.Message;
        if (message is null) { Drop(ref _malformed, "malformed"); return; }
        if (!_peers.Serves(message.OverlayId)) { Drop(ref _unservedOverlay, "unserved-overlay"); return; }
        if (!IsMemberOf(fromAddress, message.OverlayId)) { Drop(ref _notInGroup, "not-in-overlay-group"); return; }
        // Only a peer that announced itself for this overlay, under the node ID it claims, may act.
        string? announced, listed;
        lock (_gate)
        {
            announced = _peers.NodeIdOf(fromAddress);
            listed = _peers.AddressOf(message.OverlayId, env.NodeId);
        }
        if (announced is not null && announced != env.NodeId) { Drop(ref _spoofed, "spoofed-node-id"); return; }
        if (announced is null || listed != fromAddress) { Drop(ref _unknownPeer, "unknown-peer"); return; }

        if (SignalCodec.IsResponse(message))
        {
            if (_pending.TryGetValue(env.CorrelationId, out var p) && p.Address == fromAddress && p.PeerNodeId == env.NodeId && Matches(p.Request, message)
                && p.Completion.TrySetResult(message))
            {
                Interlocked.Increment(ref _responsesMatched);
            }
            else
            {
                Drop(ref _unmatched, "unmatched-response");
            }
            return;
        }

        var cid = env.CorrelationId;
        Func<SignalMessage, CancellationToken, Task>? respond = SignalCodec.IsRequest(message)
            ? (response, ct) => SendPayloadAsync(fromAddress, cid, SignalCodec.Encode(NodeId, cid, response), ct)
            : null;
        if (_incoming.Writer.TryWrite(new IncomingSignal(env.NodeId, fromAddress, message, respond)))
        {
            Interlocked.Increment(ref _accepted);
        }
        else
        {
            Drop(ref _queueFull, "queue-full");
        }
    }

    private static bool Matches(SignalMessage request, SignalMessage response) => (request, response) switch
    {
        (EdgeRequest q, EdgeResponse r) => q.OverlayId == r.OverlayId,
        (LinkOffer q, LinkAnswer r) => q.OverlayId == r.OverlayId && q.LinkId == r.LinkId,
        (LinkOffer q, LinkReject r) => q.OverlayId == r.OverlayId && q.LinkId == r.LinkId,
        _ => false,
    };

    /// <summary>This node's connection was lost: every peer's state is unknown until it announces again.</summary>
    private protected void OnSignalingLost()
    {
        ForgetPeers(_ => true, PeerChange.SignalingLost);
    }

    /// <summary>A response of the transport itself (an XMPP IQ result) that answers nothing we asked, or came from the wrong sender.</summary>
    private protected void DropUnmatchedResponse(string reason) => Drop(ref _unmatched, reason);

    private void Drop(ref long counter, string reason)
    {
        Interlocked.Increment(ref counter);
        Logger.LogDebug("dropped inbound signaling message: {Reason}", reason);
    }

    private void Raise(List<PeerEvent> events)
    {
        if (events.Count == 0) return;
        lock (_gate) Remember(events);
        foreach (var e in events)
        {
            Logger.LogInformation("peer {NodeId} {Change} overlay {Overlay} at {Address}", e.NodeId, e.Change, e.OverlayId, e.Address);
            try
            {
                PeerChanged?.Invoke(this, e);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Logger.LogWarning(ex, "a PeerChanged handler threw");
            }
            lock (_watchers)
            {
                foreach (var w in _watchers) w.Writer.TryWrite(e);
            }
        }
    }

    /// <summary>Stops the transport. Called once by <see cref="DisposeAsync"/>.</summary>
    private protected abstract ValueTask DisposeTransportAsync();

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await DisposeTransportAsync().ConfigureAwait(false);
        SetState(SignalingState.Closed, null);
        foreach (var p in _pending.Values) p.Completion.TrySetException(new ObjectDisposedException(GetType().Name));
        _incoming.Writer.TryComplete();
        lock (_watchers)
        {
            foreach (var w in _watchers) w.Writer.TryComplete();
        }
        GC.SuppressFinalize(this);
    }
}
