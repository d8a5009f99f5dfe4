using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Overlay.Signaling.Xmpp;

/// <summary>
/// Signaling over XMPP (RFC 6120/6121): one account per node, overlay membership = the account's roster
/// (a shared roster group on the server). The node announces itself with presence carrying
/// <c>&lt;signal xmlns="urn:overlay:signal:1"&gt;</c>; link negotiation travels in message stanzas with
/// the same element. Keeps the connection alive with XEP-0199 pings and reconnects with jittered
/// exponential backoff, announcing again, after the connection is lost.
/// </summary>
internal sealed class XmppSignalingChannel : SignalingChannelBase
{
    private const string RosterNamespace = "jabber:iq:roster";
    private const string PingNamespace = "urn:xmpp:ping";
    private const string StanzaErrorNamespace = "urn:ietf:params:xml:ns:xmpp-stanzas";
    private const string MessageIdPrefix = "sig-";

    private readonly XmppChannelOptions _options;
    private readonly string _ownBareJid;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<XmppElement>> _iqs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string[]> _roster = new(StringComparer.Ordinal); // bare JID → its roster groups
    private volatile Session? _session;
    private Task? _supervisor;
    private long _iqCounter;
    private int _started;

    private sealed class Session(XmppConnection connection, CancellationTokenSource cancellation)
    {
        public XmppConnection Connection { get; } = connection;
        public CancellationTokenSource Cancellation { get; } = cancellation;
        public Task<Exception>? ReadLoop { get; set; }
        public Exception? LossReason { get; set; }
    }

    /// <summary>Creates the channel; <see cref="ConnectAsync"/> connects it.</summary>
    /// <exception cref="ArgumentException">A setting is invalid (the message names it).</exception>
    public XmppSignalingChannel(XmppChannelOptions options)
        : base(Validated(options).NodeId, options.Overlays, options.RequestTimeout, options.TimeProvider,
               options.LoggerFactory?.CreateLogger<XmppSignalingChannel>(), options.OverlayGroups)
    {
        _options = options;
        _ownBareJid = options.Jid.ToLowerInvariant();
    }

    private static XmppChannelOptions Validated(XmppChannelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }

    /// <inheritdoc />
    public override string? LocalAddress => _session?.Connection.BoundJid;

    /// <summary>The SASL mechanism of the current connection (e.g. <c>SCRAM-SHA-256</c>), or null when not connected.</summary>
    public string? AuthenticationMechanism => _session?.Connection.Mechanism;

    /// <summary>The settings the channel runs with (validated).</summary>
    internal XmppChannelOptions Options => _options;

    /// <summary>How many times the channel reconnected after losing its connection.</summary>
    public long Reconnections => Interlocked.Read(ref _reconnections);

    private long _reconnections;

    /// <summary>
    /// Connects, authenticates, fetches the roster and announces. A wrong password throws
    /// <see cref="XmppAuthenticationException"/>, an untrusted server certificate
    /// <see cref="XmppCertificateException"/>; neither is retried. Later losses are retried in the background.
    /// </summary>
    public override async Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("ConnectAsync was already called");
        SetState(SignalingState.Connecting, null);
        try
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
            var session = await StartSessionAsync(linked.Token).ConfigureAwait(false);
            SetState(SignalingState.Connected, null);
            _supervisor = Task.Run(() => SuperviseAsync(session));
        }
        catch (Exception ex)
        {
            SetState(SignalingState.Disconnected, ex);
            Interlocked.Exchange(ref _started, 0);
            throw;
        }
    }

    private async Task<Session> StartSessionAsync(CancellationToken ct)
    {
        var connection = await XmppConnection.ConnectAsync(_options, Logger, ct).ConfigureAwait(false);
        var session = new Session(connection, CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token));
        session.ReadLoop = Task.Run(() => ReadLoopAsync(session));
        try
        {
            var roster = await IqAsync(session, new XmppElement("iq", XmppConnection.ClientNamespace).SetAttribute("type", "get")
                .Add(new XmppElement("query", RosterNamespace)), ct).ConfigureAwait(false);
            lock (_roster)
            {
                _roster.Clear();
                foreach (var item in roster.Child("query", RosterNamespace)?.Children ?? []) ApplyRosterItem(item);
            }
            OnRosterChanged(); // a contact's groups may have changed while we were away
            _session = session;
            await connection.SendAsync(PresenceXml(), ct).ConfigureAwait(false);
            Logger.LogInformation("connected to XMPP as {Jid} ({Mechanism}), {Count} roster members", connection.BoundJid, connection.Mechanism, RosterCount);
            _ = Task.Run(() => KeepaliveLoopAsync(session));
            return session;
        }
        catch
        {
            _session = null;
            await session.Cancellation.CancelAsync().ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
            await session.ReadLoop.ConfigureAwait(false);
            throw;
        }
    }

    private int RosterCount
    {
        get { lock (_roster) return _roster.Count; }
    }

    private string PresenceXml()
        => new XmppElement("presence", XmppConnection.ClientNamespace)
            .Add(new XmppElement(SignalCodec.ElementName, SignalCodec.Namespace).WithText(AnnouncementPayload))
            .ToXml();

    /// <summary>Runs sessions one after another: when one ends, reconnects with jittered exponential backoff.</summary>
    private async Task SuperviseAsync(Session session)
    {
        var ct = _lifetime.Token;
        while (true)
        {
            var error = await session.ReadLoop!.ConfigureAwait(false);
            error = session.LossReason ?? error;
            _session = null;
            await session.Cancellation.CancelAsync().ConfigureAwait(false);
            if (ct.IsCancellationRequested)
            {
                // The channel is closing: DisposeTransportAsync says goodbye on this connection and closes it. Closed here
                // too, it raced that goodbye, and the server saw the stream, or TLS, cut short.
                FailPendingIqs(error);
                return;
            }
            await session.Connection.DisposeAsync().ConfigureAwait(false);
            FailPendingIqs(error);

            Logger.LogWarning("XMPP connection lost: {Error}; reconnecting", error.Message);
            OnSignalingLost();
            SetState(SignalingState.Reconnecting, error);
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await Task.Delay(Backoff(attempt), TimeProvider, ct).ConfigureAwait(false);
                    session = await StartSessionAsync(ct).ConfigureAwait(false);
                    Interlocked.Increment(ref _reconnections);
                    SetState(SignalingState.Connected, null);
                    break;
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex)
                {
                    Logger.LogWarning("XMPP reconnect attempt {Attempt} failed: {Error}", attempt + 1, ex.Message);
                    SetState(SignalingState.Reconnecting, ex);
                }
            }
        }
    }

    private TimeSpan Backoff(int attempt) => Backoff(attempt, _options.ReconnectMinDelay, _options.ReconnectMaxDelay, Random.Shared.NextDouble());

    /// <summary>min · 2^attempt, capped at max, then scaled to 50–100 % by <paramref name="random"/> in [0, 1) so many nodes do not reconnect in step.</summary>
    internal static TimeSpan Backoff(int attempt, TimeSpan min, TimeSpan max, double random)
    {
        var ceiling = Math.Min(max.TotalMilliseconds, min.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt, 0, 30)));
        return TimeSpan.FromMilliseconds(ceiling * (0.5 + 0.5 * random));
    }

    private async Task<Exception> ReadLoopAsync(Session session)
    {
        var ct = session.Cancellation.Token;
        try
        {
            while (true)
            {
                var (token, element) = await session.Connection.ReadAsync(ct).ConfigureAwait(false);
                switch (token)
                {
                    case XmppToken.StreamEnd:
                        return new XmppException("the server closed the stream");
                    case XmppToken.StreamHeader:
                        return new XmppProtocolException("the server restarted the stream unexpectedly");
                }
                if (element!.Namespace == XmppStreamParser.StreamNamespace && element.Name == "error")
                {
                    const string ns = "urn:ietf:params:xml:ns:xmpp-streams";
                    var condition = element.Children.FirstOrDefault(c => c.Namespace == ns && c.Name != "text")?.Name ?? "undefined-condition";
                    return new XmppStreamErrorException(condition, $"stream error from server: {condition}");
                }
                await DispatchAsync(session, element, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return new XmppException("the connection was closed");
        }
        catch (XmppException ex)
        {
            return ex;
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
            return new XmppException($"the connection was lost: {ex.Message}", ex);
        }
    }

    private async Task DispatchAsync(Session session, XmppElement stanza, CancellationToken ct)
    {
        if (stanza.Namespace != XmppConnection.ClientNamespace) return;
        var from = stanza.Attribute("from");
        switch (stanza.Name)
        {
            case "presence":
                if (from is null || string.Equals(Bare(from), _ownBareJid, StringComparison.Ordinal)) return;
                switch (stanza.Attribute("type"))
                {
                    case null:
                        OnPresenceAvailable(from, stanza.Child(SignalCodec.ElementName, SignalCodec.Namespace)?.Text);
                        break;
                    case "unavailable":
                        OnPresenceUnavailable(from);
                        break;
                }
                return;
            case "message":
                if (from is null) return;
                if (stanza.Attribute("type") == "error")
                {
                    var id = stanza.Attribute("id");
                    if (id is not null && id.StartsWith(MessageIdPrefix, StringComparison.Ordinal))
                    {
                        var condition = stanza.Child("error", XmppConnection.ClientNamespace)?.FirstChild(StanzaErrorNamespace)?.Name ?? "error";
                        OnDeliveryFailed(id[MessageIdPrefix.Length..], condition);
                    }
                    return;
                }
                if (stanza.Child(SignalCodec.ElementName, SignalCodec.Namespace) is { } signal) OnPayload(from, signal.Text);
                return;
            case "iq":
                await HandleIqAsync(session, stanza, from, ct).ConfigureAwait(false);
                return;
        }
    }

    private async Task HandleIqAsync(Session session, XmppElement iq, string? from, CancellationToken ct)
    {
        var type = iq.Attribute("type");
        var id = iq.Attribute("id") ?? "";
        // Our requests all go to the server (no 'to'), so only the server, or our own account, answers them (RFC 6120
        // §8.1.2.1); another user who guessed an id must not answer for it (a forged roster result would make it a member).
        var fromServer = from is null || string.Equals(from, _options.Domain, StringComparison.OrdinalIgnoreCase)
            || string.Equals(Bare(from), _ownBareJid, StringComparison.Ordinal);
        if (type is "result" or "error")
        {
            if (fromServer && _iqs.TryRemove(id, out var pending)) pending.TrySetResult(iq);
            else DropUnmatchedResponse(fromServer ? "IQ result answering no request" : "IQ result from another user");
            return;
        }
        if (type is not ("get" or "set")) return;
        var reply = new XmppElement("iq", XmppConnection.ClientNamespace).SetAttribute("type", "result").SetAttribute("id", id).SetAttribute("to", from);
        if (type == "get" && iq.Child("ping", PingNamespace) is not null)
        {
            // XEP-0199 §4: answer pings.
        }
        else if (type == "set" && fromServer && iq.Child("query", RosterNamespace) is { } push)
        {
            // RFC 6121 §2.1.6: a roster push; only the server (or our own account) may send one.
            var removed = new List<string>();
            lock (_roster)
            {
                foreach (var item in push.Children)
                {
                    if (!ApplyRosterItem(item) && item.Attribute("jid") is { } gone) removed.Add(gone.ToLowerInvariant());
                }
            }
            foreach (var bare in removed) ForgetPeers(a => Bare(a) == bare, PeerChange.Revoked);
            OnRosterChanged(); // a contact that moved between groups joins or leaves those overlays
        }
        else
        {
            // RFC 6120 §8.4: an IQ we do not understand gets service-unavailable.
            reply = new XmppElement("iq", XmppConnection.ClientNamespace).SetAttribute("type", "error").SetAttribute("id", id).SetAttribute("to", from)
                .Add(new XmppElement("error", XmppConnection.ClientNamespace).SetAttribute("type", "cancel")
                    .Add(new XmppElement("service-unavailable", StanzaErrorNamespace)));
        }
        await session.Connection.SendAsync(reply.ToXml(), ct).ConfigureAwait(false);
    }

    /// <summary>Applies one roster item (caller holds the roster lock); false when it removed the JID.</summary>
    private bool ApplyRosterItem(XmppElement item)
    {
        if (item.Name != "item" || item.Attribute("jid") is not { } jid) return true;
        var bare = jid.ToLowerInvariant();
        // Members are contacts with a subscription in either direction (shared groups give "both").
        if (item.Attribute("subscription") is "both" or "to" or "from")
        {
            _roster[bare] = [.. item.Children.Where(c => c.Name == "group").Select(c => c.Text).Distinct(StringComparer.Ordinal).Take(MaxGroupsPerContact)];
            return true;
        }
        _roster.Remove(bare);
        return false;
    }

    private async Task<XmppElement> IqAsync(Session session, XmppElement iq, CancellationToken ct, bool errorIsAnswer = false)
    {
        var id = "iq-" + Interlocked.Increment(ref _iqCounter).ToString(System.Globalization.CultureInfo.InvariantCulture)
            + "-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6)); // not guessable by others
        iq.SetAttribute("id", id);
        var pending = new TaskCompletionSource<XmppElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _iqs[id] = pending;
        try
        {
            await session.Connection.SendAsync(iq.ToXml(), ct).ConfigureAwait(false);
            var result = await pending.Task.WaitAsync(_options.KeepaliveTimeout, TimeProvider, ct).ConfigureAwait(false);
            if (result.Attribute("type") == "error" && !errorIsAnswer)
            {
                var condition = result.Child("error", XmppConnection.ClientNamespace)?.FirstChild(StanzaErrorNamespace)?.Name ?? "unknown";
                throw new XmppException($"the server answered {iq.Children.FirstOrDefault()?.Name} with error {condition}");
            }
            return result;
        }
        catch (TimeoutException ex)
        {
            throw new XmppException($"no answer from the server to {iq.Children.FirstOrDefault()?.Name} within {_options.KeepaliveTimeout.TotalSeconds:0.#} s", ex);
        }
        finally
        {
            _iqs.TryRemove(id, out _);
        }
    }

    private void FailPendingIqs(Exception error)
    {
        foreach (var id in _iqs.Keys)
        {
            if (_iqs.TryRemove(id, out var p)) p.TrySetException(error);
        }
    }

    /// <summary>XEP-0199 client-to-server pings: a ping without an answer in time means the connection is dead.</summary>
    private async Task KeepaliveLoopAsync(Session session)
    {
        var ct = session.Cancellation.Token;
        try
        {
            while (true)
            {
                await Task.Delay(_options.KeepaliveInterval, TimeProvider, ct).ConfigureAwait(false);
                await IqAsync(session, new XmppElement("iq", XmppConnection.ClientNamespace).SetAttribute("type", "get")
                    .SetAttribute("to", _options.Domain).Add(new XmppElement("ping", PingNamespace)), ct, errorIsAnswer: true).ConfigureAwait(false);
                // XEP-0199 §4.2: a server without ping support answers with an error, which proves liveness just as well.
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (XmppException ex)
        {
            session.LossReason ??= new XmppException($"keepalive failed: {ex.Message}", ex);
            await session.Connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            await session.Connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static string Bare(string jid)
    {
        var slash = jid.IndexOf('/', StringComparison.Ordinal);
        return (slash < 0 ? jid : jid[..slash]).ToLowerInvariant();
    }

    private protected override async Task SendPayloadAsync(string address, string correlationId, string payload, CancellationToken cancellationToken)
    {
        var session = _session ?? throw new SignalingException($"not connected to XMPP (state {State})");
        var message = new XmppElement("message", XmppConnection.ClientNamespace)
            .SetAttribute("to", address).SetAttribute("id", MessageIdPrefix + correlationId).SetAttribute("type", "normal")
            .Add(new XmppElement(SignalCodec.ElementName, SignalCodec.Namespace).WithText(payload));
        try
        {
            await session.Connection.SendAsync(message.ToXml(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            throw new SignalingException($"sending to {address} failed: the XMPP connection is lost", ex);
        }
    }

    private protected override bool IsRosterMember(string address)
    {
        var bare = Bare(address);
        lock (_roster) return _roster.ContainsKey(bare);
    }

    /// <summary>Groups kept per roster contact (the server feeds them; a contact in more is cut there).</summary>
    private const int MaxGroupsPerContact = 64;

    private protected override string AccountOf(string address) => Bare(address);

    private protected override IReadOnlyCollection<string> RosterGroupsOf(string address)
    {
        var bare = Bare(address);
        lock (_roster) return _roster.TryGetValue(bare, out var groups) ? groups : [];
    }

    /// <summary>Sends a raw payload in a signal element (tests use it to inject hostile or unknown messages).</summary>
    internal Task SendRawAsync(string toAddress, string payload, CancellationToken cancellationToken = default)
        => SendPayloadAsync(toAddress, "raw" + Interlocked.Increment(ref _iqCounter).ToString(System.Globalization.CultureInfo.InvariantCulture), payload, cancellationToken);

    private protected override async ValueTask DisposeTransportAsync()
    {
        // Taken before the cancellation wakes the supervisor, which lets go of it.
        var session = _session;
        await _lifetime.CancelAsync().ConfigureAwait(false);
        if (session is not null) await session.Connection.CloseAsync("<presence type='unavailable'/>").ConfigureAwait(false);
        if (_supervisor is not null)
        {
            try
            {
                await _supervisor.ConfigureAwait(false);
            }
            catch (OperationCanceledException) { }
        }
        _lifetime.Dispose();
    }
}
