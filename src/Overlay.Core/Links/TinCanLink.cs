using System.Buffers;
using System.Buffers.Binary;
using Overlay.Transport;

namespace Overlay.Links;

/// <summary>
/// An authenticated, encrypted point-to-point channel for Ethernet frames between two nodes, over the
/// datagram path ICE found: a DTLS handshake proves the peer's identity and yields keys, then every
/// frame is one AES-GCM sealed datagram (<see cref="FrameSealer"/>). Keepalives measure RTT and notice
/// a dead peer or path. Sending and receiving allocate nothing per frame: packets are sealed into the send queue of the
/// caller's <see cref="DataPathBatch"/> and opened in its buffers, or on the stack when a small one comes without a batch.
/// </summary>
internal sealed class TinCanLink : IDatagramReceiver, IAsyncDisposable
{
    // Without a batch (keepalives, the control path, in-memory devices) a packet up to this size is built on the stack.
    private const int StackPacket = 2048;

    private readonly bool _controlling;
    private readonly NodeIdentity _identity;
    private readonly CertificateFingerprint _peer;
    private readonly TinCanLinkOptions _options;
    private readonly TimeProvider _time;
    private readonly ILinkFrameReceiver _receiver;
    private volatile IDatagramChannel _channel;
    private LinkSecret? _secret;
    private readonly string? _peerNodeId;
    private volatile FrameSealer? _sealer;
    private volatile FrameOpener? _opener;
    private volatile FrameOpener? _previousOpener;
    private FrameOpener? _nextOpener;
    private readonly Lock _keyLock = new();
    private long _epochStarted;
    private long _rotations;
    private ITimer? _keepalive;
    private int _keepaliveAligned;
    private ITimer? _pathMtuTimer;
    private volatile PathMtuDiscovery? _pathMtu;
    private readonly TaskCompletionSource _pathMtuSearched = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _tooBigForPath;
    private long _lastHeard;
    private long _rttTicks = -1;
    private long _framesSent, _bytesSent, _framesReceived, _bytesReceived, _oversize, _malformed, _forged, _replayed, _tooOld, _unknownEpoch, _sendFailures;
    private int _state = (int)LinkState.Connecting;

    /// <summary>
    /// Creates a link over <paramref name="channel"/>; nothing is sent until <see cref="ConnectAsync"/>. With
    /// <paramref name="peerNodeId"/>, the handshake also requires the peer's key to own that node ID.
    /// </summary>
    public TinCanLink(IDatagramChannel channel, bool controlling, NodeIdentity identity, CertificateFingerprint peer,
        ILinkFrameReceiver receiver, TinCanLinkOptions? options = null, TimeProvider? time = null, string? peerNodeId = null)
    {
        _peerNodeId = peerNodeId;
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
        (int)Math.Min(_sealer?.Epoch ?? 0, int.MaxValue), Interlocked.Read(ref _rotations))
    {
        PathMtu = PathMtu,
        DroppedTooBigForPath = Interlocked.Read(ref _tooBigForPath),
        PathMtuProbes = _pathMtu?.ProbesSent ?? 0,
        PathMtuBlackHoles = _pathMtu?.BlackHoles ?? 0,
        PathMtuSearched = _pathMtu is not null && _pathMtuSearched.Task.IsCompleted,
    };

    /// <summary>
    /// The largest outer IP packet the path takes, as path MTU discovery found it (the base, 1280, until a probe confirms
    /// more); 0 before the link is up or with discovery off.
    /// </summary>
    public int PathMtu => _pathMtu is null ? 0 : MaxDatagram + _channel.PathOverhead;

    /// <summary>The largest sealed datagram the path takes (path MTU discovery), or no limit with discovery off.</summary>
    private int MaxDatagram => _pathMtu is { } pathMtu ? pathMtu.Confirmed : int.MaxValue;

    /// <summary>Completes when the first path MTU search has ended (or found not even the base size answered).</summary>
    internal Task PathMtuSearched => _pathMtuSearched.Task;

    /// <summary>The largest plain Ethernet frame the link can send now without exceeding the path MTU.</summary>
    public int MaxFrameLength => Math.Min(_options.MaxFrameLength, MaxDatagram - FrameSealer.Overhead);

    /// <summary>
    /// Runs the handshake (as DTLS client when ICE-controlling) and starts the keepalives; <paramref name="roundTrip"/> is the
    /// path's round trip where ICE measured it (a lost handshake flight is sent again sooner).
    /// </summary>
    public async Task ConnectAsync(CancellationToken cancellationToken = default, TimeSpan? roundTrip = null)
    {
        try
        {
            _secret = await DtlsHandshake.RunAsync(_channel, _controlling, _identity, _peer, _options.HandshakeTimeout, cancellationToken, _peerNodeId,
                _options.Trust, _time.GetUtcNow(), roundTrip).ConfigureAwait(false);
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
        // The first keepalive goes out at once: it gives the status an RTT as soon as the link is up. The first one moves
        // the next ones to the multiples of the interval on the monotonic clock (OnKeepaliveTimer).
        _keepalive = _time.CreateTimer(_ => OnKeepaliveTimer(), null, TimeSpan.Zero, _options.KeepaliveInterval);
        if (_options.PathMtuDiscovery)
        {
            var (baseSize, maxSize) = PathMtuSizes(_channel);
            _pathMtu = new PathMtuDiscovery(baseSize, maxSize, _options.PathMtuConfirmInterval, _options.PathMtuRaiseInterval, _time);
            // Stored before it is started: a timer due at once can fire before CreateTimer returns, and a callback that
            // found no timer to reschedule would leave the search stalled for good.
            _pathMtuTimer = _time.CreateTimer(_ => OnPathMtuTimer(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _pathMtuTimer.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _pathMtuSearched.TrySetResult();
        }
    }

    /// <summary>
    /// Sends one frame (or, with <see cref="PacketKind.FloodFrame"/>, flood header + frame), queued in
    /// <paramref name="batch"/> to leave when it completes, or at once without one. Never blocks.
    /// </summary>
    public bool TrySend(ReadOnlySpan<byte> frame, PacketKind kind = PacketKind.Frame, DataPathBatch? batch = null)
    {
        var limit = kind == PacketKind.FloodFrame ? _options.MaxFrameLength + 64 : _options.MaxFrameLength;
        if (frame.Length > limit)
        {
            Interlocked.Increment(ref _oversize);
            return false;
        }
        if (frame.Length + FrameSealer.Overhead > MaxDatagram)
        {
            // Never an outer datagram larger than the path takes: it would be lost (DF) or fragmented.
            Interlocked.Increment(ref _tooBigForPath);
            return false;
        }
        if (!Send(frame, kind, batch)) return false;
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
        if (_pathMtu is { } pathMtu)
        {
            // Another path: what the old one took proves nothing about it.
            var (baseSize, maxSize) = PathMtuSizes(channel);
            pathMtu.Reset(baseSize, maxSize);
            _pathMtuTimer?.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        }
        Volatile.Write(ref _lastHeard, _time.GetTimestamp());
        if (State == LinkState.Disconnected) SetState(LinkState.Connected);
    }

    /// <summary>A datagram from the path (data packets 192-255; the rest is ignored), opened in a buffer of <paramref name="batch"/>.</summary>
    public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch = null)
    {
        var opener = _opener;
        if (opener is null || datagram.Length == 0 || datagram[0] < 192) return;
        if (batch is not null)
        {
            var buffer = batch.RentBuffer();
            try
            {
                Receive(opener, datagram, buffer, batch);
            }
            finally
            {
                batch.ReturnBuffer();
            }
        }
        else if (datagram.Length <= StackPacket)
        {
            Receive(opener, datagram, stackalloc byte[StackPacket], batch: null);
        }
        else
        {
            var rented = ArrayPool<byte>.Shared.Rent(datagram.Length);
            try
            {
                Receive(opener, datagram, rented, batch: null);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private void Receive(FrameOpener opener, ReadOnlySpan<byte> datagram, Span<byte> buffer, DataPathBatch? batch)
    {
        var epoch = FrameOpener.EpochOf(datagram);
        // The header carries the epoch's low byte; the receiver knows the whole number, and only the epochs beside its own
        // are accepted, so the byte names one epoch: a packet recorded 256 epochs ago is tried with today's keys and fails.
        if (epoch >= 0 && epoch != (byte)opener.Epoch)
        {
            if (_previousOpener is { } previous && (byte)previous.Epoch == epoch) opener = previous;          // still in flight from before the change
            else if (epoch == (byte)(opener.Epoch + 1) && opener.Epoch < uint.MaxValue) opener = NextOpener(opener); // the peer moved on: follow once it authenticates
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
        Volatile.Write(ref _lastHeard, batch?.Timestamp(_time) ?? _time.GetTimestamp());
        if (State == LinkState.Disconnected) SetState(LinkState.Connected);
        switch (kind)
        {
            case PacketKind.Keepalive when payload.IsEmpty:
                // A goodbye: an empty keepalive, sealed like every packet, so only the peer can have sent it.
                if (State is LinkState.Connected or LinkState.Disconnected)
                {
                    Reason = "the peer said goodbye";
                    SetState(LinkState.Ended);
                }
                return;
            case PacketKind.Keepalive:
                Send(payload, PacketKind.KeepaliveEcho, batch);
                return;
            case PacketKind.KeepaliveEcho when payload.Length >= 8:
                var sent = BinaryPrimitives.ReadInt64BigEndian(payload);
                var roundTrip = _time.GetElapsedTime(sent);
                Interlocked.Exchange(ref _rttTicks, roundTrip.Ticks);
                _options.RoundTripMeasured?.Invoke(roundTrip);
                return;
            case PacketKind.Probe when payload.Length >= ProbeHeader:
                // The answer is small whatever the probe's size: the way back need not take the probe's size.
                Span<byte> ack = stackalloc byte[ProbeHeader];
                payload[..4].CopyTo(ack);
                BinaryPrimitives.WriteUInt16BigEndian(ack[4..], (ushort)Math.Min(datagram.Length, ushort.MaxValue));
                Send(ack, PacketKind.ProbeAck, batch);
                return;
            case PacketKind.ProbeAck when payload.Length >= ProbeHeader && _pathMtu is { } pathMtu:
                if (pathMtu.OnAck(BinaryPrimitives.ReadUInt32BigEndian(payload), BinaryPrimitives.ReadUInt16BigEndian(payload[4..])))
                {
                    // Every probe of the round answered. While searching, the next round now, on the timer. A confirmation's
                    // answer only sets when the next one goes: reckoned here, on the thread that received it, since a
                    // wake-up of the timer thread for it would cost more than the reckoning.
                    if (pathMtu.Phase == PathMtuPhase.Complete) OnPathMtuTimer();
                    else _pathMtuTimer?.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
                }
                return;
            case PacketKind.Frame or PacketKind.FloodFrame:
                Interlocked.Increment(ref _framesReceived);
                Interlocked.Add(ref _bytesReceived, payload.Length);
                _receiver.OnFrame(this, kind, payload, batch);
                return;
        }
    }

    private FrameOpener NextOpener(FrameOpener current)
    {
        lock (_keyLock)
        {
            if (_nextOpener is { } next && next.Epoch == current.Epoch + 1) return next;
            var keys = _secret!.ForEpoch(current.Epoch + 1);
            return _nextOpener = new FrameOpener(keys.ReceiveKey, keys.ReceiveSalt, current.Epoch + 1);
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
            if (current.Epoch == uint.MaxValue) return; // the last epoch: it seals until its packet limit, then the link stops sending (Send)
            var epoch = current.Epoch + 1;
            var keys = _secret!.ForEpoch(epoch);
            // The old sealer is not disposed: another thread may be sealing with it right now; the GC reclaims it.
            _sealer = new FrameSealer(keys.SendKey, keys.SendSalt, epoch);
            _epochStarted = _time.GetTimestamp();
            Interlocked.Increment(ref _rotations);
        }
    }

    /// <summary>Seals and sends; a probe (<paramref name="probing"/>) may be larger than the path is known to take, and its loss is no failure.</summary>
    private bool Send(ReadOnlySpan<byte> payload, PacketKind kind, DataPathBatch? batch, bool probing = false)
    {
        var sealer = _sealer;
        var channel = _channel;
        if (sealer is null || State is LinkState.Closed or LinkState.Failed)
        {
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        var size = channel.Headroom + FrameSealer.Overhead + payload.Length;
        if (batch is not null)
        {
            // Sealed in the send queue's next slot, the packet is queued where it lies: no copy after the cipher.
            var slot = size <= SendQueue.SlotSize ? batch.RentSendSlot() : default;
            if (!slot.IsEmpty)
            {
                try
                {
                    return Send(sealer, channel, payload, kind, slot, batch, probing);
                }
                finally
                {
                    batch.ReturnSendSlot();
                }
            }
            var buffer = batch.RentBuffer();
            try
            {
                return Send(sealer, channel, payload, kind, buffer, batch, probing);
            }
            finally
            {
                batch.ReturnBuffer();
            }
        }
        if (size <= StackPacket) return Send(sealer, channel, payload, kind, stackalloc byte[StackPacket], batch: null, probing);
        var rented = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            return Send(sealer, channel, payload, kind, rented, batch: null, probing);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Seals <paramref name="payload"/> in <paramref name="buffer"/> behind the channel's headroom and sends it.</summary>
    private bool Send(FrameSealer sealer, IDatagramChannel channel, ReadOnlySpan<byte> payload, PacketKind kind, Span<byte> buffer, DataPathBatch? batch, bool probing)
    {
        if (sealer.Epoch == uint.MaxValue && sealer.Sequence >= _options.RekeyAfterPackets)
        {
            // Every epoch is spent (2^32 of them): a hard stop, never a key used past its limit. The link falls silent
            // and is set up anew, with a new handshake and new secrets.
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        var headroom = channel.Headroom;
        var packet = buffer.Slice(headroom, FrameSealer.Overhead + payload.Length);
        var length = sealer.Seal(packet, payload, kind); // read where it is: no copy in front of the cipher
        if (length == 0) // the link closed meanwhile: its keys are gone
        {
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        if (sealer.Sequence >= _options.RekeyAfterPackets && sealer == _sealer) Rotate();
        if (channel.TrySend(buffer[..(headroom + length)], length, batch)) return true;
        if (!probing) Interlocked.Increment(ref _sendFailures); // a probe too large for the local interface fails here (EMSGSIZE)
        return false;
    }

    /// <summary>How long since anything authenticated arrived from the peer.</summary>
    internal TimeSpan Silence => _time.GetElapsedTime(Volatile.Read(ref _lastHeard));

    private void OnKeepaliveTimer()
    {
        if (State is LinkState.Closed or LinkState.Failed) return;
        // Every link of the process sends at the same instants, so the timer thread wakes once for all of them and one
        // worker sends them in a row, where links set up at different times would each wake it (30 links: 15 wake-ups a
        // second, against one every 2 s). Each link still sends every interval and looks for a dead peer at each.
        if (Volatile.Read(ref _keepaliveAligned) == 0 && Volatile.Read(ref _keepalive) is { } timer && Interlocked.Exchange(ref _keepaliveAligned, 1) == 0)
            timer.Change(TimeGrid.UntilNextMultiple(_time, _time.GetTimestamp(), _options.KeepaliveInterval), _options.KeepaliveInterval);
        var silence = _time.GetElapsedTime(Volatile.Read(ref _lastHeard));
        if (silence >= _options.DeadPeerTimeout && State == LinkState.Connected)
        {
            Reason = $"nothing heard from the peer for {silence.TotalSeconds:0.#} s";
            SetState(LinkState.Disconnected);
        }
        if (_time.GetElapsedTime(Volatile.Read(ref _epochStarted)) >= _options.RekeyInterval) Rotate();
        Span<byte> stamp = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(stamp, _time.GetTimestamp());
        Send(stamp, PacketKind.Keepalive, batch: null);
    }

    /// <summary>A probe's payload starts with its 32-bit number; an acknowledgement adds the 16-bit size that arrived.</summary>
    private const int ProbeHeader = 6;

    /// <summary>Datagram sizes for path MTU discovery on <paramref name="channel"/>: the base (an outer packet of 1280, IPv6's minimum) and the most a frame needs.</summary>
    private (int Base, int Max) PathMtuSizes(IDatagramChannel channel) =>
        (BasePathMtu - channel.PathOverhead, FrameSealer.Overhead + _options.MaxFrameLength + Switching.Flood.FloodHeader.Length);

    /// <summary>RFC 8899 §5.1.2's BASE_PLPMTU, as an outer packet size: what IPv6 guarantees (RFC 8200 §5).</summary>
    internal const int BasePathMtu = 1280;

    private void OnPathMtuTimer()
    {
        if (_pathMtu is not { } pathMtu || State is LinkState.Closed or LinkState.Failed or LinkState.Ended) return;
        Span<PathMtuProbe> probes = stackalloc PathMtuProbe[PathMtuDiscovery.Ladder];
        var rtt = Interlocked.Read(ref _rttTicks);
        // A round waits a few round trips for answers (at least 250 ms: a loaded host answers late), 1 s before the first RTT.
        var timeout = rtt < 0 ? TimeSpan.FromSeconds(1) : TimeSpan.FromTicks(Math.Clamp(4 * rtt, TimeSpan.TicksPerMillisecond * 250, TimeSpan.TicksPerSecond * 2));
        var count = pathMtu.Poll(timeout, probes, out var next);
        if (pathMtu.Phase is PathMtuPhase.Complete or PathMtuPhase.Error) _pathMtuSearched.TrySetResult();
        for (var i = 0; i < count; i++) SendProbe(probes[i]);
        if (State is LinkState.Closed or LinkState.Failed or LinkState.Ended) return;
        // Waiting for the next confirmation (or, after an error, the next try): at a keepalive instant, with the keepalives
        // of every link (the interval grows by less than one keepalive interval: 15 s becomes 16).
        if (count == 0 && !pathMtu.InRound && pathMtu.Phase is PathMtuPhase.Complete or PathMtuPhase.Error)
            next = TimeGrid.AlignUp(_time, next, _options.KeepaliveInterval);
        _pathMtuTimer?.Change(next, Timeout.InfiniteTimeSpan);
        // Answers that came while the probes were going out (a fast path) ended the round already: their own call to come
        // back at once may have been overwritten just above.
        if (pathMtu.RoundOver) _pathMtuTimer?.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    private void SendProbe(PathMtuProbe probe)
    {
        var length = Math.Max(ProbeHeader, probe.Size - FrameSealer.Overhead);
        var rented = length > StackPacket ? ArrayPool<byte>.Shared.Rent(length) : null;
        Span<byte> payload = rented is null ? stackalloc byte[StackPacket] : rented;
        try
        {
            payload = payload[..length];
            payload.Clear();
            BinaryPrimitives.WriteUInt32BigEndian(payload, probe.Id);
            Send(payload, PacketKind.Probe, batch: null, probing: true);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private void SetState(LinkState state)
    {
        if (Interlocked.Exchange(ref _state, (int)state) != (int)state) StateChanged?.Invoke(this, state);
    }

    /// <summary>
    /// Stops keepalives, detaches from the path and forgets the keys. A frame being sealed or opened on another thread
    /// meanwhile finishes first (sealer and opener free their keys under the lock each packet takes); later ones fail
    /// and are counted.
    /// </summary>
    /// <summary>
    /// Tells the peer, over the link itself, that this end is going (it stops, or leaves the overlay): the peer ends the
    /// link at once instead of after its dead-peer timeout, whatever state signaling is in. Sent a few times, since
    /// datagrams may be lost; a peer that hears none notices the silence as before.
    /// </summary>
    public void SayGoodbye()
    {
        if (State is not (LinkState.Connected or LinkState.Disconnected)) return;
        for (var i = 0; i < GoodbyeCopies; i++) Send(ReadOnlySpan<byte>.Empty, PacketKind.Keepalive, batch: null);
    }

    private const int GoodbyeCopies = 3;

    public async ValueTask DisposeAsync()
    {
        SetState(LinkState.Closed);
        if (_keepalive is not null) await _keepalive.DisposeAsync().ConfigureAwait(false);
        if (_pathMtuTimer is not null) await _pathMtuTimer.DisposeAsync().ConfigureAwait(false);
        _channel.SetReceiver(null);
        lock (_keyLock)
        {
            _sealer?.Dispose();
            _opener?.Dispose();
            _previousOpener?.Dispose();
            _nextOpener?.Dispose();
        }
    }
}
