using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;
using Overlay.Transport;

namespace Overlay.Nat;

/// <summary>Answers incoming STUN requests (ICE connectivity checks).</summary>
internal interface IStunRequestHandler
{
    /// <summary><paramref name="viaRelay"/> is the TURN peer when the request came through <paramref name="relay"/>, else null.</summary>
    void OnStunRequest(scoped ref StunReader request, SocketAddress from, StunAddress? viaRelay, TurnClient? relay);
}

/// <summary>
/// The STUN side of one ICE component's socket: the <see cref="UdpMux"/>, the shared scheduler and client
/// transactions, the TURN clients (one per server and transport; those over UDP share the socket, those over TCP or
/// TLS have a stream each), and the dispatch of incoming STUN (responses to their transactions, Data indications and
/// ChannelData to the TURN client of the server they came from, requests to ICE). Malformed and unsolicited messages
/// are dropped and counted here.
/// </summary>
internal sealed class StunEndpoint : IStunPacketHandler, IChannelDataHandler, IRelayedPacketHandler, IDisposable
{
    private readonly ILogger _logger;
    private readonly Lock _turnGate = new();
    private TurnClient[] _turns = [];
    private long _channelDataDropped;
    private long _malformed, _unsolicited, _keepalives;

    private readonly bool _ownScheduler;

    /// <summary>An endpoint on <paramref name="mux"/>; its timed work runs on <paramref name="scheduler"/> when given (shared, not disposed here), else on its own.</summary>
    public StunEndpoint(UdpMux mux, TimeProvider time, ILogger? logger = null, NatScheduler? scheduler = null)
    {
        Mux = mux;
        _ownScheduler = scheduler is null;
        Scheduler = scheduler ?? new NatScheduler(time);
        Transactions = new StunTransactionTable(Scheduler);
        Sender = new DirectStunSender(mux);
        _logger = logger ?? NullLogger.Instance;
        mux.SetHandlers(this, this);
    }

    public UdpMux Mux { get; }

    public NatScheduler Scheduler { get; }

    public StunTransactionTable Transactions { get; }

    public IStunSender Sender { get; }

    /// <summary>The first TURN client (the only one in single-server uses and tests).</summary>
    public TurnClient? Turn => _turns.Length > 0 ? _turns[0] : null;

    /// <summary>Every TURN client attached, in order.</summary>
    public IReadOnlyList<TurnClient> Turns => _turns;

    /// <summary>What every TURN client dropped, plus ChannelData from no known server.</summary>
    public long TurnDropped
    {
        get
        {
            var sum = Interlocked.Read(ref _channelDataDropped);
            foreach (var t in _turns) sum += t.Dropped;
            return sum;
        }
    }

    public IStunRequestHandler? Requests { get; set; }

    /// <summary>STUN datagrams that failed to parse or carried a wrong FINGERPRINT.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Responses matching no transaction, and requests/indications nobody takes.</summary>
    public long Unsolicited => Interlocked.Read(ref _unsolicited);

    /// <summary>Binding indications received (keepalives, RFC 8445 §11).</summary>
    public long Keepalives => Interlocked.Read(ref _keepalives);

    public TurnClient AttachTurn(TurnServer options)
    {
        var turn = new TurnClient(Mux, Transactions, Scheduler, options, _logger) { Handler = this };
        lock (_turnGate) _turns = [.. _turns, turn];
        return turn;
    }

    /// <summary>Forgets a TURN client (replaced or given up); the caller disposes it.</summary>
    public void DetachTurn(TurnClient turn)
    {
        lock (_turnGate) _turns = [.. _turns.Where(t => t != turn)];
    }

    /// <summary>The TURN client over UDP whose server sent <paramref name="from"/>, or null.</summary>
    private TurnClient? UdpTurnFrom(SocketAddress from)
    {
        foreach (var t in _turns)
            if (!t.IsStream && from.Equals(t.Server)) return t;
        return null;
    }

    public void OnChannelData(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch)
    {
        if (UdpTurnFrom(from) is { } turn) turn.OnChannelData(datagram, from, batch);
        else Interlocked.Increment(ref _channelDataDropped);
    }

    /// <summary>Learns this socket's server-reflexive address from a STUN server (RFC 8489 Binding); null on timeout.</summary>
    public async Task<StunAddress?> DiscoverMappedAddressAsync(IPEndPoint server, StunRetransmissionOptions? retransmission = null, CancellationToken ct = default)
    {
        var message = new byte[64];
        var length = WriteBindingRequest(message);
        var response = await StunRequest.SendAsync(Transactions, message.AsSpan(0, length), Mux.ToSocketAddress(server), Sender, retransmission, ct).ConfigureAwait(false);
        if (response is null || !StunReader.TryParse(response, out var r) || r.Class != StunClass.SuccessResponse) return null;
        if (r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped) || r.TryGetAddress(StunAttributeType.MappedAddress, out mapped)) return mapped;
        return null;
    }

    private static int WriteBindingRequest(Span<byte> buffer)
    {
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddFingerprint();
        return w.Length;
    }

    public void OnStunPacket(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch) => Handle(datagram, from, null, null, batch);

    public void OnRelayedStun(ReadOnlySpan<byte> message, StunAddress peer, TurnClient relay) => Handle(message, null, peer, relay, batch: null);

    private void Handle(ReadOnlySpan<byte> datagram, SocketAddress? from, StunAddress? viaRelay, TurnClient? relay, DataPathBatch? batch)
    {
        if (!StunReader.TryParse(datagram, out var reader) || (reader.HasFingerprint && !reader.VerifyFingerprint()))
        {
            Interlocked.Increment(ref _malformed);
            return;
        }
        switch (reader.Class)
        {
            case StunClass.SuccessResponse or StunClass.ErrorResponse:
                if (!Transactions.TryComplete(ref reader, from, viaRelay, relay)) Interlocked.Increment(ref _unsolicited);
                return;
            case StunClass.Indication:
                if (reader.Method == StunMethod.Data && viaRelay is null && UdpTurnFrom(from!) is { } turn)
                    turn.OnDataIndication(ref reader, batch);
                else if (reader.Method == StunMethod.Binding) // Binding indications are keepalives (RFC 8445 §11)
                    Interlocked.Increment(ref _keepalives);
                else
                    Interlocked.Increment(ref _unsolicited);
                return;
            default:
                if (Requests is { } handler) handler.OnStunRequest(ref reader, from ?? relay!.Server, viaRelay, relay);
                else Interlocked.Increment(ref _unsolicited);
                return;
        }
    }

    public void Dispose()
    {
        Mux.Dispose();
        if (_ownScheduler)
        {
            Scheduler.Dispose();
            return;
        }
        // A shared scheduler goes on: what this endpoint left in it would only wake it to be ignored.
        Transactions.CancelEverything();
        foreach (var turn in _turns) Scheduler.Cancel(turn);
    }
}
