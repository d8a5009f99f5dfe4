using System.Net;
using NUnit.Framework;
using Overlay.Nat;
using Overlay.Nat.Stun;

namespace Overlay.Core.Tests.Nat;

public class StunTransactionTests
{
    private sealed class RecordingSender(ManualTimeProvider time) : IStunSender
    {
        public List<TimeSpan> SentAt { get; } = [];

        public void SendStun(ReadOnlySpan<byte> message, SocketAddress destination) => SentAt.Add(TimeSpan.FromTicks(time.GetTimestamp()));
    }

    private sealed class Outcome : IStunTransactionOwner
    {
        public TimeSpan? TimedOutAt;
        public int Responses;
        public ManualTimeProvider? Time;

        public bool Accept(StunTransaction transaction, scoped ref StunReader response, SocketAddress? from, StunAddress? viaRelay, object? relay) => true;

        public void OnResponse(StunTransaction transaction, scoped ref StunReader response) => Responses++;

        public void OnTimeout(StunTransaction transaction) => TimedOutAt = TimeSpan.FromTicks(Time!.GetTimestamp());
    }

    private static byte[] Request(out TransactionId id)
    {
        id = TransactionId.NewRandom();
        var buffer = new byte[64];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, id);
        w.AddFingerprint();
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    [Test]
    public void Retransmits_on_the_rfc8489_schedule_then_times_out_after_Rm_times_RTO()
    {
        var time = new ManualTimeProvider();
        using var scheduler = new NatScheduler(time);
        var table = new StunTransactionTable(scheduler);
        var sender = new RecordingSender(time);
        var outcome = new Outcome { Time = time };
        table.Start(Request(out _), new IPEndPoint(IPAddress.Loopback, 1).Serialize(), sender, outcome, null);
        time.Advance(TimeSpan.FromSeconds(60));
        // RFC 8489 §6.2.1 example: 0, 500, 1500, 3500, 7500, 15500, 31500 ms; failure at 39500 ms.
        Assert.That(sender.SentAt.Select(t => t.TotalMilliseconds), Is.EqualTo(new double[] { 0, 500, 1500, 3500, 7500, 15500, 31500 }));
        Assert.That(outcome.TimedOutAt, Is.EqualTo(TimeSpan.FromMilliseconds(39500)));
        Assert.That(table.Pending, Is.Zero);
    }

    [Test]
    public void A_response_stops_retransmission_and_a_duplicate_response_is_unsolicited()
    {
        var time = new ManualTimeProvider();
        using var scheduler = new NatScheduler(time);
        var table = new StunTransactionTable(scheduler);
        var sender = new RecordingSender(time);
        var outcome = new Outcome { Time = time };
        table.Start(Request(out var id), new IPEndPoint(IPAddress.Loopback, 1).Serialize(), sender, outcome, null);
        time.Advance(TimeSpan.FromMilliseconds(700));
        var response = new byte[64];
        var w = new StunWriter(response, StunMethod.Binding, StunClass.SuccessResponse, id);
        var length = w.Length;
        Assert.That(StunReader.TryParse(response.AsSpan(0, length), out var r), Is.True);
        Assert.That(table.TryComplete(ref r), Is.True);
        Assert.That(table.TryComplete(ref r), Is.False);
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.That(sender.SentAt, Has.Count.EqualTo(2));
        Assert.That(outcome.Responses, Is.EqualTo(1));
        Assert.That(outcome.TimedOutAt, Is.Null);
    }

    [Test]
    public void An_answered_transaction_leaves_nothing_in_the_scheduler_to_wake_it()
    {
        // A consent check every few seconds per link, answered long before its RTO: its retransmission left queued would
        // fire the scheduler's timer once per check for nothing.
        var time = new ManualTimeProvider();
        using var scheduler = new NatScheduler(time);
        var table = new StunTransactionTable(scheduler);
        var outcome = new Outcome { Time = time };
        table.Start(Request(out var id), new IPEndPoint(IPAddress.Loopback, 1).Serialize(), new RecordingSender(time), outcome, null);
        Assert.That(scheduler.Count, Is.EqualTo(1), "the retransmission waits");
        var response = new byte[64];
        var w = new StunWriter(response, StunMethod.Binding, StunClass.SuccessResponse, id);
        Assert.That(StunReader.TryParse(response.AsSpan(0, w.Length), out var r), Is.True);
        Assert.That(table.TryComplete(ref r), Is.True);
        Assert.That(scheduler.Count, Is.Zero);
        var firings = scheduler.Firings;
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.That(scheduler.Firings - firings, Is.LessThanOrEqualTo(1), "at most the timer armed before the answer came, finding nothing due");
    }

    [Test]
    public void Cancelling_everything_empties_the_table_and_a_shared_scheduler()
    {
        var time = new ManualTimeProvider();
        using var scheduler = new NatScheduler(time);
        var table = new StunTransactionTable(scheduler);
        var sender = new RecordingSender(time);
        var outcome = new Outcome { Time = time };
        for (var i = 0; i < 3; i++) table.Start(Request(out _), new IPEndPoint(IPAddress.Loopback, 1).Serialize(), sender, outcome, null);
        table.CancelEverything();
        Assert.That(table.Pending, Is.Zero);
        Assert.That(scheduler.Count, Is.Zero);
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.That(sender.SentAt, Has.Count.EqualTo(3), "no retransmission after the cancel");
        Assert.That(outcome.TimedOutAt, Is.Null, "a cancelled transaction's owner is not called");
    }

    [Test]
    public void Many_transactions_share_one_timer()
    {
        var time = new ManualTimeProvider();
        using var scheduler = new NatScheduler(time);
        var table = new StunTransactionTable(scheduler);
        var sender = new RecordingSender(time);
        for (var i = 0; i < 100; i++) table.Start(Request(out _), new IPEndPoint(IPAddress.Loopback, 1).Serialize(), sender, new Outcome { Time = time }, null);
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.That(time.TimersCreated, Is.EqualTo(1));
        Assert.That(sender.SentAt, Has.Count.EqualTo(700));
    }
}
