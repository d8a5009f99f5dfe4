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
    /// <summary><paramref name="viaRelay"/> is the TURN peer when the request came through the relay, else null.</summary>
    void OnStunRequest(scoped ref StunReader request, SocketAddress from, StunAddress? viaRelay);
}

/// <summary>
/// The STUN side of one ICE component's socket: the <see cref="UdpMux"/>, the shared scheduler and client
/// transactions, the TURN client, and the dispatch of incoming STUN (responses to their transactions, Data
/// indications to TURN, requests to ICE). Malformed and unsolicited messages are dropped and counted here.
/// </summary>
internal sealed class StunEndpoint : IStunPacketHandler, IRelayedPacketHandler, IDisposable
{
    private readonly ILogger _logger;
    private long _malformed, _unsolicited, _keepalives;

    public StunEndpoint(UdpMux mux, TimeProvider time, ILogger? logger = null)
    {
        Mux = mux;
        Scheduler = new NatScheduler(time);
        Transactions = new StunTransactionTable(Scheduler);
        Sender = new DirectStunSender(mux);
        _logger = logger ?? NullLogger.Instance;
        mux.SetHandlers(this, null);
    }

    public UdpMux Mux { get; }

    public NatScheduler Scheduler { get; }

    public StunTransactionTable Transactions { get; }

    public IStunSender Sender { get; }

    public TurnClient? Turn { get; private set; }

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
        Turn = turn;
        Mux.SetHandlers(this, turn);
        return turn;
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

    public void OnStunPacket(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch) => Handle(datagram, from, null, batch);

    public void OnRelayedStun(ReadOnlySpan<byte> message, StunAddress peer) => Handle(message, null, peer, batch: null);

    private void Handle(ReadOnlySpan<byte> datagram, SocketAddress? from, StunAddress? viaRelay, DataPathBatch? batch)
    {
        if (!StunReader.TryParse(datagram, out var reader) || (reader.HasFingerprint && !reader.VerifyFingerprint()))
        {
            Interlocked.Increment(ref _malformed);
            return;
        }
        switch (reader.Class)
        {
            case StunClass.SuccessResponse or StunClass.ErrorResponse:
                if (!Transactions.TryComplete(ref reader, from, viaRelay)) Interlocked.Increment(ref _unsolicited);
                return;
            case StunClass.Indication:
                if (reader.Method == StunMethod.Data && viaRelay is null && Turn is { } turn && from!.Equals(turn.Server))
                    turn.OnDataIndication(ref reader, batch);
                else if (reader.Method == StunMethod.Binding) // Binding indications are keepalives (RFC 8445 §11)
                    Interlocked.Increment(ref _keepalives);
                else
                    Interlocked.Increment(ref _unsolicited);
                return;
            default:
                if (Requests is { } handler) handler.OnStunRequest(ref reader, from ?? Turn!.Server, viaRelay);
                else Interlocked.Increment(ref _unsolicited);
                return;
        }
    }

    public void Dispose()
    {
        Mux.Dispose();
        Scheduler.Dispose();
    }
}
