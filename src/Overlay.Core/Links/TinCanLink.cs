using System.Buffers.Binary;
using Overlay.Transport;

namespace Overlay.Links;

/// <summary>
/// An authenticated, encrypted point-to-point channel for Ethernet frames between two nodes, over the
/// datagram path ICE found: a DTLS handshake proves the peer's identity and yields keys, then every
/// frame is one AES-GCM sealed datagram (<see cref="FrameSealer"/>). Keepalives measure RTT and notice
/// a dead peer or path. Sending and receiving allocate nothing per frame.
/// </summary>
internal sealed class TinCanLink : IDatagramReceiver, IAsyncDisposable
{
    // One working buffer per thread and nesting level: a link's send can run a peer's receive on the same
    // thread (in-memory paths, keepalive echoes), which must not overwrite the buffer still in use below it.
    [ThreadStatic] private static byte[]?[]? t_buffers;
    [ThreadStatic] private static int t_depth;

    private readonly bool _controlling;
    private readonly NodeIdentity _identity;
    private readonly CertificateFingerprint _peer;
    private readonly TinCanLinkOptions _options;
    private readonly TimeProvider _time;
    private readonly ILinkFrameReceiver _receiver;
    private volatile IDatagramChannel _channel;
    private LinkSecret? _secret;
    private volatile FrameSealer? _sealer;
    private volatile FrameOpener? _opener;
    private volatile FrameOpener? _previousOpener;
    private FrameOpener? _nextOpener;
    private readonly Lock _keyLock = new();
    private long _epochStarted;
    private long _rotations;
    private ITimer? _keepalive;
    private long _lastHeard;
    private long _rttTicks = -1;
    private long _framesSent, _bytesSent, _framesReceived, _bytesReceived, _oversize, _malformed, _forged, _replayed, _tooOld, _unknownEpoch, _sendFailures;
    private int _state = (int)LinkState.Connecting;

    /// <summary>Creates a link over <paramref name="channel"/>; nothing is sent until <see cref="ConnectAsync"/>.</summary>
    public TinCanLink(IDatagramChannel channel, bool controlling, NodeIdentity identity, CertificateFingerprint peer,
        ILinkFrameReceiver receiver, TinCanLinkOptions? options = null, TimeProvider? time = null)
    {
        _channel = channel ?? throw new ArgumentNullException(nameof(channel));
        _identity = identity ?? throw new ArgumentNullException(nameof(identity));
        _receiver = receiver ?? throw new ArgumentNullException(nameof(receiver));
        _controlling = controlling;
        _peer = peer;
        _options = options ?? new TinCanLinkOptions();
        _options.Validate();
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The link's state.</summary>
    public LinkState State => (LinkState)Volatile.Read(ref _state);

    /// <summary>Raised on every state change (from the thread that caused it).</summary>
    public event Action<TinCanLink, LinkState>? StateChanged;

    /// <summary>Why the link failed or disconnected, when it did.</summary>
    public string? Reason { get; private set; }

    /// <summary>The peer's certificate fingerprint.</summary>
    public CertificateFingerprint Peer => _peer;

    /// <summary>A snapshot of the counters.</summary>
    public LinkStatistics Statistics => new(
        Interlocked.Read(ref _framesSent), Interlocked.Read(ref _bytesSent), Interlocked.Read(ref _framesReceived), Interlocked.Read(ref _bytesReceived),
        Interlocked.Read(ref _oversize), Interlocked.Read(ref _malformed), Interlocked.Read(ref _forged), Interlocked.Read(ref _replayed),
        Interlocked.Read(ref _tooOld), Interlocked.Read(ref _unknownEpoch), Interlocked.Read(ref _sendFailures),
        Interlocked.Read(ref _rttTicks) is var t and >= 0 ? TimeSpan.FromTicks(t) : null,
        _sealer?.Epoch ?? 0, Interlocked.Read(ref _rotations));

    /// <summary>Runs the handshake (as DTLS client when ICE-controlling) and starts the keepalives.</summary>
    public async Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            _secret = await DtlsHandshake.RunAsync(_channel, _controlling, _identity, _peer, _options.HandshakeTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is PeerAuthenticationException or TimeoutException)
        {
            Reason = e.Message;
            SetState(LinkState.Failed);
            throw;
        }
        var keys = _secret.ForEpoch(0);
        _sealer = new FrameSealer(keys.SendKey, keys.SendSalt, epoch: 0);
        _opener = new FrameOpener(keys.ReceiveKey, keys.ReceiveSalt, epoch: 0);
        _epochStarted = _time.GetTimestamp();
        Volatile.Write(ref _lastHeard, _time.GetTimestamp());
        _channel.SetReceiver(this);
        SetState(LinkState.Connected);
        // The first keepalive goes out at once: it gives the status an RTT as soon as the link is up.
        _keepalive = _time.CreateTimer(_ => OnKeepaliveTimer(), null, TimeSpan.Zero, _options.KeepaliveInterval);
    }

    /// <summary>Sends one frame (or, with <see cref="PacketKind.FloodFrame"/>, flood header + frame). Never blocks.</summary>
    public bool TrySend(ReadOnlySpan<byte> frame, PacketKind kind = PacketKind.Frame)
    {
        var limit = kind == PacketKind.FloodFrame ? _options.MaxFrameLength + 64 : _options.MaxFrameLength;
        if (frame.Length > limit)
        {
            Interlocked.Increment(ref _oversize);
            return false;
        }
        if (!Send(frame, kind)) return false;
        Interlocked.Increment(ref _framesSent);
        Interlocked.Add(ref _bytesSent, frame.Length);
        return true;
    }

    /// <summary>Moves the link onto a new path (after an ICE restart) without a new identity or handshake.</summary>
    public void ReplaceChannel(IDatagramChannel channel)
    {
        ArgumentNullException.ThrowIfNull(channel);
        var old = _channel;
        _channel = channel;
        old.SetReceiver(null);
        if (_sealer is not null) channel.SetReceiver(this);
        Volatile.Write(ref _lastHeard, _time.GetTimestamp());
        if (State == LinkState.Disconnected) SetState(LinkState.Connected);
    }

    /// <summary>A datagram from the path (data packets 192-255; the rest is ignored).</summary>
    public void OnDatagram(ReadOnlySpan<byte> datagram)
    {
        var opener = _opener;
        if (opener is null || datagram.Length == 0 || datagram[0] < 192) return;
        var buffer = EnterBuffer();
        try
        {
            Receive(opener, datagram, buffer);
        }
        finally
        {
            t_depth--;
        }
    }

    private static byte[] EnterBuffer()
    {
        var buffers = t_buffers ??= new byte[]?[8];
        var depth = t_depth++;
        if (depth >= buffers.Length) return new byte[65536 + 64]; // pathological nesting: correct, if not free
        return buffers[depth] ??= GC.AllocateUninitializedArray<byte>(65536 + 64, pinned: true);
    }

    private void Receive(FrameOpener opener, ReadOnlySpan<byte> datagram, byte[] buffer)
    {
        var epoch = FrameOpener.EpochOf(datagram);
        if (epoch >= 0 && epoch != opener.Epoch)
        {
            if (_previousOpener is { } previous && previous.Epoch == epoch) opener = previous; // still in flight from before the change
            else if (epoch == (byte)(opener.Epoch + 1)) opener = NextOpener(opener);           // the peer moved on: follow once it authenticates
        }
        var result = opener.TryOpen(datagram, buffer, out var kind, out var payload);
        if (result == OpenResult.Opened && opener == _nextOpener) Promote(opener);
        switch (result)
        {
            case OpenResult.Opened:
                break;
            case OpenResult.Malformed: Interlocked.Increment(ref _malformed); return;
            case OpenResult.Forged: Interlocked.Increment(ref _forged); return;
            case OpenResult.Replayed: Interlocked.Increment(ref _replayed); return;
            case OpenResult.TooOld: Interlocked.Increment(ref _tooOld); return;
            default: Interlocked.Increment(ref _unknownEpoch); return;
        }
        Volatile.Write(ref _lastHeard, _time.GetTimestamp());
        if (State == LinkState.Disconnected) SetState(LinkState.Connected);
        switch (kind)
        {
            case PacketKind.Keepalive:
                Send(payload, PacketKind.KeepaliveEcho);
                return;
            case PacketKind.KeepaliveEcho when payload.Length >= 8:
                var sent = BinaryPrimitives.ReadInt64BigEndian(payload);
                Interlocked.Exchange(ref _rttTicks, _time.GetElapsedTime(sent).Ticks);
                return;
            case PacketKind.Frame or PacketKind.FloodFrame:
                Interlocked.Increment(ref _framesReceived);
                Interlocked.Add(ref _bytesReceived, payload.Length);
                _receiver.OnFrame(this, kind, payload);
                return;
        }
    }

    private FrameOpener NextOpener(FrameOpener current)
    {
        lock (_keyLock)
        {
            if (_nextOpener is { } next && next.Epoch == (byte)(current.Epoch + 1)) return next;
            var keys = _secret!.ForEpoch((byte)(current.Epoch + 1));
            return _nextOpener = new FrameOpener(keys.ReceiveKey, keys.ReceiveSalt, (byte)(current.Epoch + 1));
        }
    }

    private void Promote(FrameOpener next)
    {
        lock (_keyLock)
        {
            if (_opener == next) return;
            _previousOpener = _opener;
            _opener = next;
            _nextOpener = null;
        }
    }

    /// <summary>Moves sending to the next key epoch; the peer follows when the first packet of it authenticates.</summary>
    private void Rotate()
    {
        lock (_keyLock)
        {
            var current = _sealer!;
            var epoch = (byte)(current.Epoch + 1);
            var keys = _secret!.ForEpoch(epoch);
            // The old sealer is not disposed: another thread may be sealing with it right now; the GC reclaims it.
            _sealer = new FrameSealer(keys.SendKey, keys.SendSalt, epoch);
            _epochStarted = _time.GetTimestamp();
            Interlocked.Increment(ref _rotations);
        }
    }

    private bool Send(ReadOnlySpan<byte> payload, PacketKind kind)
    {
        var sealer = _sealer;
        var channel = _channel;
        if (sealer is null || State is LinkState.Closed or LinkState.Failed)
        {
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        var buffer = EnterBuffer();
        try
        {
            var headroom = channel.Headroom;
            var packet = buffer.AsSpan(headroom, FrameSealer.Overhead + payload.Length);
            payload.CopyTo(packet[FrameSealer.HeaderLength..]);
            var length = sealer.Seal(packet, payload.Length, kind);
            if (sealer.Sequence >= _options.RekeyAfterPackets && sealer == _sealer) Rotate();
            if (channel.TrySend(buffer.AsSpan(0, headroom + length), length)) return true;
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        finally
        {
            t_depth--;
        }
    }

    private void OnKeepaliveTimer()
    {
        if (State is LinkState.Closed or LinkState.Failed) return;
        var silence = _time.GetElapsedTime(Volatile.Read(ref _lastHeard));
        if (silence >= _options.DeadPeerTimeout && State == LinkState.Connected)
        {
            Reason = $"nothing heard from the peer for {silence.TotalSeconds:0.#} s";
            SetState(LinkState.Disconnected);
        }
        if (_time.GetElapsedTime(Volatile.Read(ref _epochStarted)) >= _options.RekeyInterval) Rotate();
        Span<byte> stamp = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(stamp, _time.GetTimestamp());
        Send(stamp, PacketKind.Keepalive);
    }

    private void SetState(LinkState state)
    {
        if (Interlocked.Exchange(ref _state, (int)state) != (int)state) StateChanged?.Invoke(this, state);
    }

    /// <summary>Stops keepalives, detaches from the path and forgets the keys.</summary>
    public async ValueTask DisposeAsync()
    {
        SetState(LinkState.Closed);
        if (_keepalive is not null) await _keepalive.DisposeAsync().ConfigureAwait(false);
        _channel.SetReceiver(null);
        _sealer?.Dispose();
        _opener?.Dispose();
    }
}
