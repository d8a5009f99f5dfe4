using System.Net;

namespace Overlay.Nat.Stun;

/// <summary>Sends a STUN message towards a destination (directly on the socket, or through a TURN relay).</summary>
internal interface IStunSender
{
    void SendStun(ReadOnlySpan<byte> message, SocketAddress destination);
}

/// <summary>Receives the outcome of a client transaction. Called without any table lock held.</summary>
internal interface IStunTransactionOwner
{
    /// <summary>Checks a matching response before it completes the transaction (for example its MESSAGE-INTEGRITY), so a
    /// forged response with a guessed transaction ID cannot end a transaction.</summary>
    /// <param name="transaction">The matching transaction.</param>
    /// <param name="response">The response.</param>
    /// <param name="from">Where the response came from on the socket, or null when it came through the TURN relay.</param>
    /// <param name="viaRelay">The TURN peer it came from when relayed.</param>
    /// <param name="relay">The TURN client whose relay it came through, when relayed.</param>
    bool Accept(StunTransaction transaction, scoped ref StunReader response, SocketAddress? from, StunAddress? viaRelay, object? relay);

    void OnResponse(StunTransaction transaction, scoped ref StunReader response);

    void OnTimeout(StunTransaction transaction);
}

/// <summary>One outstanding request: its bytes (a copy: control traffic, not the data path), where it goes, and its retransmission state.</summary>
internal sealed class StunTransaction : IScheduled
{
    internal StunTransactionTable Table = null!;
    internal byte[] Buffer = [];
    internal int Length;
    internal int Sent;
    internal TimeSpan Rto;
    internal StunRetransmissionOptions Options = StunRetransmissionOptions.Default;
    internal bool Done;

    public TransactionId Id { get; internal set; }

    public SocketAddress Destination { get; internal set; } = null!;

    public IStunSender Sender { get; internal set; } = null!;

    public IStunTransactionOwner Owner { get; internal set; } = null!;

    /// <summary>The owner's context (for example the candidate pair a check is for).</summary>
    public object? State { get; internal set; }

    /// <summary>Timestamp of the first transmission (for RTT).</summary>
    public long StartedAt { get; internal set; }

    public void OnDue(long now) => Table.OnDue(this);
}

/// <summary>
/// Client transactions (RFC 8489 §6.2.1): retransmits on the shared <see cref="NatScheduler"/>, matches responses
/// by transaction ID, reports timeouts. Thread-safe; owners are called outside the table's lock.
/// </summary>
internal sealed class StunTransactionTable
{
    private readonly Dictionary<TransactionId, StunTransaction> _pending = [];
    private readonly Lock _gate = new();
    private readonly NatScheduler _scheduler;

    public StunTransactionTable(NatScheduler scheduler) => _scheduler = scheduler;

    public int Pending
    {
        get { lock (_gate) return _pending.Count; }
    }

    /// <summary>Starts a transaction for <paramref name="message"/> (its ID is read from the header) and sends it now.</summary>
    public StunTransaction Start(ReadOnlySpan<byte> message, SocketAddress destination, IStunSender sender, IStunTransactionOwner owner,
        object? state, StunRetransmissionOptions? options = null)
    {
        var tx = new StunTransaction
        {
            Table = this,
            Id = TransactionId.Read(message[8..]),
            Buffer = message.ToArray(),
            Length = message.Length,
            Destination = destination,
            Sender = sender,
            Owner = owner,
            State = state,
            Options = options ?? StunRetransmissionOptions.Default,
            StartedAt = _scheduler.Now,
        };
        tx.Rto = tx.Options.InitialRto;
        lock (_gate) _pending[tx.Id] = tx;
        OnDue(tx);
        return tx;
    }

    internal void OnDue(StunTransaction tx)
    {
        bool timedOut;
        lock (_gate)
        {
            if (tx.Done) return;
            timedOut = tx.Sent >= tx.Options.MaxRequests;
            if (timedOut) Finish(tx);
            else tx.Sent++;
        }
        if (timedOut)
        {
            tx.Owner.OnTimeout(tx);
            return;
        }
        tx.Sender.SendStun(tx.Buffer.AsSpan(0, tx.Length), tx.Destination);
        // RFC 8489 §6.2.1: intervals RTO, 2·RTO, 4·RTO…; after the last request wait Rm·RTO.
        var wait = tx.Sent >= tx.Options.MaxRequests ? tx.Options.InitialRto * tx.Options.FinalWaitMultiplier : tx.Rto;
        tx.Rto *= 2;
        lock (_gate)
        {
            // Not when it completed meanwhile: Finish has taken it out of the scheduler already.
            if (!tx.Done) _scheduler.In(wait, tx);
        }
    }

    /// <summary>Completes the matching transaction with <paramref name="response"/>; false when none is pending.</summary>
    public bool TryComplete(scoped ref StunReader response, SocketAddress? from = null, StunAddress? viaRelay = null, object? relay = null)
    {
        StunTransaction? tx;
        lock (_gate)
        {
            if (!_pending.TryGetValue(response.TransactionId, out tx)) return false;
        }
        if (!tx.Owner.Accept(tx, ref response, from, viaRelay, relay)) return false;
        lock (_gate)
        {
            if (tx.Done) return false;
            Finish(tx);
        }
        tx.Owner.OnResponse(tx, ref response);
        return true;
    }

    /// <summary>Stops retransmitting without calling the owner.</summary>
    public void Cancel(StunTransaction tx)
    {
        lock (_gate)
        {
            if (!tx.Done) Finish(tx);
        }
    }

    /// <summary>Cancels every transaction of <paramref name="owner"/>.</summary>
    public void CancelAll(IStunTransactionOwner owner)
    {
        lock (_gate)
        {
            List<StunTransaction>? gone = null;
            foreach (var tx in _pending.Values)
                if (tx.Owner == owner) (gone ??= []).Add(tx);
            if (gone is null) return;
            foreach (var tx in gone) Finish(tx);
        }
    }

    /// <summary>Cancels every transaction still pending, without calling their owners (the endpoint closes).</summary>
    public void CancelEverything()
    {
        lock (_gate)
        {
            foreach (var tx in _pending.Values.ToArray()) Finish(tx);
        }
    }

    private void Finish(StunTransaction tx)
    {
        tx.Done = true;
        _pending.Remove(tx.Id);
        // Its next retransmission (or final wait) would wake the scheduler's thread for nothing: a consent check every
        // few seconds per link, each answered long before its RTO.
        _scheduler.Cancel(tx);
    }
}
