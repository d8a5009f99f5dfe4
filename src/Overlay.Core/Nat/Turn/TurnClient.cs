using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Overlay.Nat.Stun;
using Overlay.Transport;

namespace Overlay.Nat.Turn;

/// <summary>
/// TURN client for one allocation (RFC 8656) on the component's shared socket: Allocate with long-term credentials
/// (401 challenge, 438 stale nonce), Refresh before expiry, CreatePermission, ChannelBind with ChannelData framing,
/// Send/Data indications, and deallocation (Refresh with LIFETIME 0) on dispose. Over UDP it shares the component's
/// socket; over TCP or TLS (RFC 8656 §3.1) it has a <see cref="TurnStreamConnection"/> of its own, and requests are
/// sent once (a reliable transport, RFC 8489 §6.2.2).
/// </summary>
internal sealed partial class TurnClient : IChannelDataHandler, IStreamFrameHandler, IScheduled, IAsyncDisposable
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private static readonly StunRetransmissionOptions StreamRetransmission = new(TimeSpan.FromSeconds(5), MaxRequests: 1, FinalWaitMultiplier: 1);

    private static readonly TimeSpan PermissionRefresh = TimeSpan.FromMinutes(4);   // RFC 8656 §9: permissions last 300 s
    private static readonly TimeSpan ChannelRefresh = TimeSpan.FromMinutes(8);      // RFC 8656 §12: channels last 600 s
    private static readonly TimeSpan MaintenanceInterval = TimeSpan.FromSeconds(30);

    private delegate void AttributeWriter(ref StunWriter writer, object? state);

    private readonly UdpMux _mux;
    private readonly StunTransactionTable _transactions;
    private readonly NatScheduler _scheduler;
    private readonly IStunSender _sender;
    private readonly TurnStreamConnection? _stream;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<IPAddress, (StunAddress Peer, long At)> _permissions = [];
    private Binding[] _channels = [];
    private DataRoute[] _routes = [];
    private ushort _nextChannel = ChannelData.FirstChannel;
    private byte[]? _key;
    private string? _realm, _nonce;
    private long _refreshDue;
    private bool _closed;
    private long _dropped, _permissionRequests;

    private sealed record Binding(ushort Channel, StunAddress Peer, SocketAddress PeerSocketAddress)
    {
        public long BoundAt;
        public bool Confirmed;
    }

    private readonly record struct DataRoute(StunAddress Peer, IDatagramReceiver Receiver);

    public TurnClient(UdpMux mux, StunTransactionTable transactions, NatScheduler scheduler, TurnServer options, ILogger? logger = null)
    {
        options.Validate();
        _mux = mux;
        _transactions = transactions;
        _scheduler = scheduler;
        // A stream's socket is made here, in the caller's network namespace, and connected when allocating.
        _stream = options.IsStream ? new TurnStreamConnection(options) : null;
        _sender = _stream is null ? new DirectStunSender(mux) : new StreamStunSender(this);
        Options = options;
        _logger = logger ?? NullLogger.Instance;
        Server = mux.ToSocketAddress(options.EndPoint);
        var server = options.EndPoint.Address;
        RelayFamily = server.IsIPv4MappedToIPv6 ? AddressFamily.InterNetwork : server.AddressFamily;
    }

    /// <summary>
    /// The family of the relayed address asked for: the family the server is reached by, so that a server reached over
    /// IPv6 relays to IPv6 peers (RFC 8656 §7.2: IPv4 unless REQUESTED-ADDRESS-FAMILY says otherwise). A server
    /// known by a name with both A and AAAA records is one client per address, and so gives a relay of each family.
    /// </summary>
    public AddressFamily RelayFamily { get; }

    public TurnServer Options { get; }

    /// <summary>Over TCP or TLS rather than the shared UDP socket.</summary>
    public bool IsStream => _stream is not null;

    /// <summary>The stream to the server, when there is one (diagnostics, tests).</summary>
    internal TurnStreamConnection? Stream => _stream;

    /// <summary>The server in socket form (to recognise its packets).</summary>
    public SocketAddress Server { get; }

    public StunAddress? RelayedAddress { get; private set; }

    public StunAddress? MappedAddress { get; private set; }

    public IRelayedPacketHandler? Handler { get; set; }

    /// <summary>Relayed packets dropped: malformed, unknown channel, unknown peer.</summary>
    public long Dropped => Interlocked.Read(ref _dropped) + (_stream?.Dropped ?? 0);

    private sealed class StreamStunSender(TurnClient turn) : IStunSender
    {
        public void SendStun(ReadOnlySpan<byte> message, SocketAddress destination) => turn._stream!.Send(message);
    }

    /// <summary>Allocates a relayed address; false when the server refused or did not answer.</summary>
    public async Task<bool> AllocateAsync(CancellationToken ct = default)
    {
        if (_stream is { IsOpen: false } stream && !await stream.ConnectAsync(this, _mux.Loop, ConnectTimeout, ct).ConfigureAwait(false))
        {
            LogUnreachable(Options);
            return false;
        }
        var response = await RequestAllocationAsync(RelayFamily, ct).ConfigureAwait(false);
        if (RelayFamily == AddressFamily.InterNetworkV6 && ErrorCodeOf(response) == AddressFamilyNotSupported)
        {
            // The server has no IPv6 relay (RFC 8656 §7.2): an IPv4 one still reaches IPv4 peers.
            LogFamilyRefused(Options);
            response = await RequestAllocationAsync(AddressFamily.InterNetwork, ct).ConfigureAwait(false);
        }
        if (response is null || !StunReader.TryParse(response, out var r) || r.Class != StunClass.SuccessResponse) return false;
        if (!r.TryGetXorAddress(StunAttributeType.XorRelayedAddress, out var relayed)) return false;
        RelayedAddress = relayed;
        if (r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped)) MappedAddress = mapped;
        var lifetime = r.TryGetUInt32(StunAttributeType.Lifetime, out var seconds) ? TimeSpan.FromSeconds(seconds) : Options.Lifetime;
        ScheduleRefresh(lifetime);
        _scheduler.In(MaintenanceInterval, this);
        LogAllocated(relayed, lifetime, Options);
        return true;
    }

    /// <summary>RFC 8656 §19: the server does not relay to the requested address family.</summary>
    private const int AddressFamilyNotSupported = 440;

    private Task<byte[]?> RequestAllocationAsync(AddressFamily family, CancellationToken ct) =>
        RequestAsync(StunMethod.Allocate, static (ref StunWriter w, object? s) =>
        {
            var (turn, family) = ((TurnClient, AddressFamily))s!;
            w.AddRequestedTransport();
            // IPv4 is the default and is not named: a server from before RFC 6156 would refuse the attribute (420).
            if (family == AddressFamily.InterNetworkV6) w.AddRequestedAddressFamily(family);
            w.AddUInt32(StunAttributeType.Lifetime, (uint)turn.Options.Lifetime.TotalSeconds);
        }, (this, family), ct);

    private static int ErrorCodeOf(byte[]? response) =>
        response is not null && StunReader.TryParse(response, out var r) && r.Class == StunClass.ErrorResponse && r.TryGetErrorCode(out var code, out _) ? code : 0;

    private void ScheduleRefresh(TimeSpan lifetime)
    {
        // Refresh a minute before expiry (or at half the lifetime when that is short).
        var lead = lifetime > TimeSpan.FromMinutes(2) ? lifetime - TimeSpan.FromMinutes(1) : lifetime / 2;
        Volatile.Write(ref _refreshDue, _scheduler.After(lead));
    }

    /// <summary>Refreshes the allocation (RFC 8656 §8); lifetime zero deletes it.</summary>
    public async Task<bool> RefreshAsync(TimeSpan lifetime, CancellationToken ct = default)
    {
        var response = await RequestAsync(StunMethod.Refresh, static (ref StunWriter w, object? s) =>
            w.AddUInt32(StunAttributeType.Lifetime, (uint)(int)s!), (int)lifetime.TotalSeconds, ct).ConfigureAwait(false);
        if (response is null || !StunReader.TryParse(response, out var r) || r.Class != StunClass.SuccessResponse) return false;
        if (lifetime > TimeSpan.Zero)
            ScheduleRefresh(r.TryGetUInt32(StunAttributeType.Lifetime, out var seconds) ? TimeSpan.FromSeconds(seconds) : lifetime);
        return true;
    }

    /// <summary>Installs a permission for <paramref name="peer"/>'s IP address (RFC 8656 §9), kept fresh until dispose.</summary>
    public async Task<bool> CreatePermissionAsync(StunAddress peer, CancellationToken ct = default)
    {
        // Servers refuse XOR-PEER-ADDRESS with port 0 (coturn does), so a real peer transport address is sent.
        var ip = peer.ToEndPoint().Address;
        lock (_gate) _permissions[ip] = (peer, _scheduler.Now);
        Interlocked.Increment(ref _permissionRequests);
        var response = await RequestAsync(StunMethod.CreatePermission, static (ref StunWriter w, object? s) =>
            w.AddXorAddress(StunAttributeType.XorPeerAddress, (StunAddress)s!), peer, ct).ConfigureAwait(false);
        var ok = response is not null && StunReader.TryParse(response, out var r) && r.Class == StunClass.SuccessResponse;
        if (!ok) LogRequestFailed("CreatePermission", peer);
        return ok;
    }

    /// <summary>Binds a channel to <paramref name="peer"/> (RFC 8656 §12) so data travels with a 4-byte header.</summary>
    public async Task<bool> BindChannelAsync(StunAddress peer, CancellationToken ct = default)
    {
        Binding binding;
        lock (_gate)
        {
            binding = Array.Find(_channels, b => b.Peer == peer)!;
            if (binding is null)
            {
                if (_nextChannel > ChannelData.LastChannel) return false;
                binding = new Binding(_nextChannel++, peer, _mux.ToSocketAddress(peer.ToEndPoint()));
                _channels = [.. _channels, binding];
            }
        }
        var response = await RequestAsync(StunMethod.ChannelBind, static (ref StunWriter w, object? s) =>
        {
            var b = (Binding)s!;
            w.AddChannelNumber(b.Channel);
            w.AddXorAddress(StunAttributeType.XorPeerAddress, b.Peer);
        }, binding, ct).ConfigureAwait(false);
        var ok = response is not null && StunReader.TryParse(response, out var r) && r.Class == StunClass.SuccessResponse;
        if (ok)
        {
            binding.BoundAt = _scheduler.Now;
            binding.Confirmed = true;
            lock (_gate) _permissions[peer.ToEndPoint().Address] = (peer, _scheduler.Now); // a channel binding also installs a permission
        }
        else
        {
            LogRequestFailed("ChannelBind", peer);
        }
        return ok;
    }

    /// <summary>
    /// Stops keeping permissions and channel bindings fresh for every peer address but <paramref name="keep"/> (the peer
    /// of a link's selected relayed pair, or none). TURN cannot delete them; unrefreshed, the server lets permissions
    /// expire after 300 s and channels after 10 min (RFC 8656 §9, §12), so addresses a peer once signalled stop being
    /// reachable through our relay. A later <see cref="CreatePermissionAsync"/> or <see cref="BindChannelAsync"/> for an
    /// address installs it again.
    /// </summary>
    public void RetainPermissions(IPAddress? keep)
    {
        lock (_gate)
        {
            foreach (var ip in _permissions.Keys.ToArray())
                if (!ip.Equals(keep)) _permissions.Remove(ip);
            foreach (var b in _channels)
                if (!b.Peer.ToEndPoint().Address.Equals(keep)) b.Confirmed = false;
        }
    }

    /// <summary>Peer addresses whose permissions are kept fresh (diagnostics, tests).</summary>
    internal IPAddress[] PermittedPeers
    {
        get { lock (_gate) return [.. _permissions.Keys]; }
    }

    /// <summary>CreatePermission requests sent, first ones and refreshes (diagnostics, tests).</summary>
    internal long PermissionRequests => Interlocked.Read(ref _permissionRequests);

    /// <summary>The bound channel for <paramref name="peer"/>, or 0.</summary>
    public ushort ChannelFor(StunAddress peer)
    {
        foreach (var b in _channels)
            if (b.Confirmed && b.Peer == peer) return b.Channel;
        return 0;
    }

    /// <summary>Sends <paramref name="payload"/> to <paramref name="peer"/> through the relay: ChannelData when bound, else a Send indication.</summary>
    public bool SendTo(ReadOnlySpan<byte> payload, StunAddress peer)
    {
        var channel = ChannelFor(peer);
        Span<byte> buffer = stackalloc byte[payload.Length + 64];
        int length;
        if (channel != 0)
        {
            ChannelData.WriteHeader(buffer, channel, payload.Length);
            payload.CopyTo(buffer[ChannelData.HeaderSize..]);
            length = ChannelData.HeaderSize + payload.Length;
        }
        else
        {
            var w = new StunWriter(buffer, StunMethod.Send, StunClass.Indication, TransactionId.NewRandom());
            w.AddXorAddress(StunAttributeType.XorPeerAddress, peer);
            w.AddBytes(StunAttributeType.Data, payload);
            if (w.Overflowed) return false;
            length = w.Length;
        }
        return Transmit(buffer[..length], batch: null);
    }

    private bool Transmit(ReadOnlySpan<byte> message, DataPathBatch? batch) =>
        _stream is { } stream ? stream.Send(message) : _mux.Send(message, Server, batch);

    /// <summary>
    /// Sends a datagram whose 4 bytes of headroom become the ChannelData header (no copy), queued in
    /// <paramref name="batch"/> when there is one.
    /// </summary>
    public bool TrySendFramed(Span<byte> buffer, int payloadLength, StunAddress peer, DataPathBatch? batch = null)
    {
        var channel = ChannelFor(peer);
        if (channel == 0) return SendTo(buffer.Slice(ChannelData.HeaderSize, payloadLength), peer);
        ChannelData.WriteHeader(buffer, channel, payloadLength);
        return Transmit(buffer[..(ChannelData.HeaderSize + payloadLength)], batch);
    }

    /// <summary>Routes DTLS and data datagrams relayed from <paramref name="peer"/> to <paramref name="receiver"/>.</summary>
    public void AddDataRoute(StunAddress peer, IDatagramReceiver receiver)
    {
        lock (_gate) _routes = [.. _routes.Where(r => r.Peer != peer), new DataRoute(peer, receiver)];
    }

    /// <summary>Handles a Data indication from the server (RFC 8656 §11.4).</summary>
    public void OnDataIndication(scoped ref StunReader indication, DataPathBatch? batch = null)
    {
        if (!indication.TryGetXorAddress(StunAttributeType.XorPeerAddress, out var peer) ||
            !indication.TryGetAttribute(StunAttributeType.Data, out var data) || data.IsEmpty)
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        DeliverRelayed(data, peer, batch);
    }

    /// <summary>Handles a ChannelData message (RFC 8656 §12.6).</summary>
    public void OnChannelData(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch)
    {
        if (!from.Equals(Server) || !ChannelData.TryRead(datagram, out var channel, out var payload) || payload.IsEmpty)
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        foreach (var b in _channels)
        {
            if (b.Channel == channel)
            {
                DeliverRelayed(payload, b.Peer, batch);
                return;
            }
        }
        Interlocked.Increment(ref _dropped);
    }

    /// <summary>A frame from the stream to the server: a response, a Data indication or ChannelData (on the event loop).</summary>
    public void OnStreamFrame(ReadOnlySpan<byte> frame, DataPathBatch? batch)
    {
        if (frame[0] >= 0x40)
        {
            OnChannelData(frame, Server, batch);
            return;
        }
        if (!StunReader.TryParse(frame, out var r) || (r.HasFingerprint && !r.VerifyFingerprint()))
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        if (r.Class is StunClass.SuccessResponse or StunClass.ErrorResponse)
        {
            if (!_transactions.TryComplete(ref r, Server)) Interlocked.Increment(ref _dropped);
        }
        else if (r.Class == StunClass.Indication && r.Method == StunMethod.Data)
        {
            OnDataIndication(ref r, batch);
        }
        else
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private void DeliverRelayed(ReadOnlySpan<byte> payload, StunAddress peer, DataPathBatch? batch)
    {
        var first = payload[0];
        if (first <= 3)
        {
            if (Handler is { } handler) handler.OnRelayedStun(payload, peer, this);
            else Interlocked.Increment(ref _dropped);
            return;
        }
        if (first is (>= 20 and <= 63) or >= 192)
        {
            foreach (var route in _routes)
            {
                if (route.Peer == peer)
                {
                    route.Receiver.OnDatagram(payload, batch);
                    return;
                }
            }
        }
        Interlocked.Increment(ref _dropped);
    }

    /// <summary>Periodic maintenance on the shared scheduler: refresh allocation, permissions and channels.</summary>
    public void OnDue(long now)
    {
        if (_closed) return;
        if (now >= Volatile.Read(ref _refreshDue)) _ = RefreshAsync(Options.Lifetime);
        List<StunAddress> permissions = [];
        List<StunAddress> channels = [];
        var permissionAge = (long)(PermissionRefresh.TotalSeconds * _scheduler.Time.TimestampFrequency);
        var channelAge = (long)(ChannelRefresh.TotalSeconds * _scheduler.Time.TimestampFrequency);
        lock (_gate)
        {
            foreach (var (peer, at) in _permissions.Values)
                if (now - at >= permissionAge) permissions.Add(peer);
            foreach (var b in _channels)
                if (b.Confirmed && now - b.BoundAt >= channelAge) channels.Add(b.Peer);
        }
        foreach (var p in permissions) _ = CreatePermissionAsync(p);
        foreach (var c in channels) _ = BindChannelAsync(c);
        _scheduler.In(MaintenanceInterval, this);
    }

    private async Task<byte[]?> RequestAsync(StunMethod method, AttributeWriter? attributes, object? state, CancellationToken ct)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var message = Build(method, attributes, state);
            var response = await StunRequest.SendAsync(_transactions, message, Server, _sender, _stream is null ? null : StreamRetransmission, ct).ConfigureAwait(false);
            if (response is null) return null;
            if (!Challenged(response)) return response;
        }
        return null;
    }

    /// <summary>Takes REALM/NONCE from a 401 or 438 (RFC 8656 §7.3, RFC 8489 §9.2.5); true when the request should be retried.</summary>
    private bool Challenged(byte[] response)
    {
        if (!StunReader.TryParse(response, out var r) || r.Class != StunClass.ErrorResponse || !r.TryGetErrorCode(out var code, out _)) return false;
        if (code is not (401 or 438)) return false;
        if (!r.TryGetString(StunAttributeType.Nonce, out var nonce)) return false;
        lock (_gate)
        {
            if (r.TryGetString(StunAttributeType.Realm, out var realm) && realm != _realm)
            {
                _realm = realm;
                _key = StunCredentials.LongTermKey(Options.Username, realm, Options.Password);
            }
            else if (code == 401 && _key is not null && nonce == _nonce)
            {
                return false; // credentials refused, not merely unannounced
            }
            _nonce = nonce;
        }
        return _key is not null;
    }

    private byte[] Build(StunMethod method, AttributeWriter? attributes, object? state)
    {
        var buffer = new byte[1024];
        var w = new StunWriter(buffer, method, StunClass.Request, TransactionId.NewRandom());
        attributes?.Invoke(ref w, state);
        byte[]? key;
        lock (_gate)
        {
            key = _key;
            if (key is not null)
            {
                w.AddString(StunAttributeType.Username, Options.Username);
                w.AddString(StunAttributeType.Realm, _realm!);
                w.AddString(StunAttributeType.Nonce, _nonce!);
            }
        }
        if (key is not null) w.AddMessageIntegrity(key);
        w.AddFingerprint();
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    /// <summary>Deletes the allocation (Refresh with LIFETIME 0, RFC 8656 §8) and stops maintenance.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_closed) return;
        _closed = true;
        if (RelayedAddress is not null)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                await RefreshAsync(TimeSpan.Zero, cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // best effort: the server expires the allocation on its own
            }
        }
        if (_stream is { } stream) await stream.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "TURN allocation {Relayed} for {Lifetime} from {Server}")]
    private partial void LogAllocated(StunAddress relayed, TimeSpan lifetime, TurnServer server);

    [LoggerMessage(Level = LogLevel.Information, Message = "TURN server {Server} has no IPv6 relay (440): asking for an IPv4 one")]
    private partial void LogFamilyRefused(TurnServer server);

    [LoggerMessage(Level = LogLevel.Information, Message = "TURN server {Server} cannot be reached")]
    private partial void LogUnreachable(TurnServer server);

    [LoggerMessage(Level = LogLevel.Debug, Message = "TURN {Request} for {Peer} failed")]
    private partial void LogRequestFailed(string request, StunAddress peer);
}
