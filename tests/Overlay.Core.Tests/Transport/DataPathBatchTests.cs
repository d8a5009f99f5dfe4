using System.Net;
using NUnit.Framework;
using Overlay.Transport;

namespace Overlay.Core.Tests.Transport;

/// <summary>The end of a burst: what was deferred runs once, its own sends join the batch, and then everything leaves.</summary>
public class DataPathBatchTests
{
    [SetUp]
    public void RequireEpoll() => Assume.That(EventLoop.IsSupported, "the batch's sendmmsg queue is Linux's");

    /// <summary>A device port stand-in: at the end of the burst it sends one more datagram (the host's answer) into the batch.</summary>
    private sealed class Answering(UdpMux mux, SocketAddress destination) : IBurstCompletion
    {
        public int Runs;
        public int QueuedWhenRun = -1;
        public bool CompleteAgain;

        public void OnBurstComplete(DataPathBatch batch)
        {
            Runs++;
            QueuedWhenRun = batch.QueuedDatagrams;
            Assert.That(mux.Send([0xC0, (byte)Runs], destination, batch), Is.True);
            if (CompleteAgain) batch.Complete(); // a device read ending its own burst inside the completion
        }
    }

    private sealed class Collector : IDatagramReceiver
    {
        public System.Collections.Concurrent.BlockingCollection<byte[]> Datagrams { get; } = [];
        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch) => Datagrams.Add(datagram.ToArray());
    }

    private sealed class CountingClock : TimeProvider
    {
        public long Now;
        public int Reads;
        public override long GetTimestamp()
        {
            Reads++;
            return Now;
        }
    }

    [Test]
    public void The_clock_is_read_once_per_burst_and_again_in_the_next()
    {
        using var batch = new DataPathBatch();
        var clock = new CountingClock { Now = 100 };
        var other = new CountingClock { Now = 7 };
        Assert.That(batch.Timestamp(clock), Is.EqualTo(100));
        clock.Now = 200;
        Assert.That(batch.Timestamp(clock), Is.EqualTo(100), "within the burst: the burst's time");
        Assert.That(clock.Reads, Is.EqualTo(1));
        Assert.That(batch.Timestamp(other), Is.EqualTo(7), "another clock is read, not given this one's time");
        batch.Complete();
        Assert.That(batch.Timestamp(clock), Is.EqualTo(200), "the next burst reads the clock again");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void A_deferred_completion_runs_once_before_the_batch_sends_and_what_it_sends_leaves_with_it(bool nested)
    {
        using var sender = UdpMux.Bind();
        using var receiver = UdpMux.Bind();
        var collector = new Collector();
        receiver.AddRoute(receiver.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, sender.LocalEndPoint.Port)), collector);
        receiver.Attach(null);
        var destination = sender.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, receiver.LocalEndPoint.Port));
        using var batch = new DataPathBatch();
        var completion = new Answering(sender, destination) { CompleteAgain = nested };

        Assert.That(sender.Send([0xC0, 0], destination, batch), Is.True);
        batch.Defer(completion);
        batch.Defer(completion); // asked twice in one burst: runs once
        batch.Complete();

        Assert.That(completion.Runs, Is.EqualTo(1));
        Assert.That(completion.QueuedWhenRun, Is.EqualTo(1), "it ran before the batch sent");
        Assert.That(batch.QueuedDatagrams, Is.Zero, "and everything left when the batch completed");
        for (var n = 0; n < 2; n++)
            Assert.That(collector.Datagrams.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got[1] : -1, Is.EqualTo(n), $"datagram {n} arrived, in order");
        batch.Complete();
        Assert.That(completion.Runs, Is.EqualTo(1), "a completed burst does not run it again");
    }

    /// <summary>Two sockets on loopback, the second's datagrams from the first collected.</summary>
    private static (UdpMux Sender, UdpMux Receiver, Collector Collector, SocketAddress Destination) Pair()
    {
        var sender = UdpMux.Bind();
        var receiver = UdpMux.Bind();
        var collector = new Collector();
        receiver.AddRoute(receiver.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, sender.LocalEndPoint.Port)), collector);
        receiver.Attach(null);
        return (sender, receiver, collector, sender.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, receiver.LocalEndPoint.Port)));
    }

    private static byte[] Take(Collector collector) => collector.Datagrams.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got : [];

    [Test]
    public void A_datagram_built_in_the_lent_slot_is_queued_where_it_lies_and_one_built_elsewhere_meanwhile_goes_at_once()
    {
        var (sender, receiver, collector, destination) = Pair();
        using var _ = sender;
        using var __ = receiver;
        using var batch = new DataPathBatch();

        var slot = batch.RentSendSlot();
        Assert.That(slot.Length, Is.EqualTo(SendQueue.SlotSize));
        Assert.That(batch.RentSendSlot().IsEmpty, Is.True, "a send nested in this one gets no slot (it seals in a buffer)");
        byte[] sealedInSlot = [0xC0, 1, 2, 3, 4, 5];
        sealedInSlot.CopyTo(slot[4..]); // behind 4 bytes of headroom, as a link seals

        // Another datagram while the slot is lent (a nested send): queued, it would be copied over the slot; it leaves now.
        Assert.That(sender.Send([0xC0, 9], destination, batch), Is.True);
        Assert.That(batch.QueuedDatagrams, Is.Zero, "sent at once, not queued");
        Assert.That(slot[4..10].ToArray(), Is.EqualTo(sealedInSlot), "the lent slot is untouched");

        Assert.That(sender.Send(slot.Slice(4, sealedInSlot.Length), destination, batch), Is.True);
        Assert.That(batch.QueuedDatagrams, Is.EqualTo(1), "the datagram built in the slot is queued");
        slot[4] = 0xC7; // queued where it lies, not copied: a change before the send is what leaves
        batch.ReturnSendSlot();
        batch.Complete();

        Assert.That(Take(collector), Is.EqualTo(new byte[] { 0xC0, 9 }));
        Assert.That(Take(collector), Is.EqualTo(new byte[] { 0xC7, 1, 2, 3, 4, 5 }));
        Assert.That(batch.RentSendSlot().IsEmpty, Is.False, "returned, the slot is lent again");
        batch.ReturnSendSlot();
    }

    [Test]
    public void A_datagram_built_in_the_lent_slot_survives_the_queue_being_sent_before_it_is_added()
    {
        var (sender, receiver, collector, destination) = Pair();
        using var other = UdpMux.Bind();
        using var _ = sender;
        using var __ = receiver;
        var otherDestination = other.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, receiver.LocalEndPoint.Port));
        receiver.AddRoute(receiver.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, other.LocalEndPoint.Port)), collector);
        using var batch = new DataPathBatch();

        Assert.That(other.Send([0xC0, 1], otherDestination, batch), Is.True); // another socket's datagram holds the queue
        var slot = batch.RentSendSlot();
        byte[] sealedInSlot = [0xC0, 2, 3];
        sealedInSlot.CopyTo(slot);
        // Queued for this socket, the other's go first and the next slot is the first again: the datagram is copied there.
        Assert.That(sender.Send(slot[..3], destination, batch), Is.True);
        slot.Clear();
        batch.ReturnSendSlot();
        batch.Complete();

        var got = new[] { Take(collector), Take(collector) }.OrderBy(d => d.Length).ToArray();
        Assert.That(got[0], Is.EqualTo(new byte[] { 0xC0, 1 }));
        Assert.That(got[1], Is.EqualTo(sealedInSlot), "intact after the flush moved it");
    }

    [Test]
    public void A_full_queue_is_sent_before_its_next_slot_is_lent()
    {
        var (sender, receiver, collector, destination) = Pair();
        using var _ = sender;
        using var __ = receiver;
        using var batch = new DataPathBatch();
        for (var i = 0; i < SendQueue.Capacity; i++) Assert.That(sender.Send([0xC0, (byte)i], destination, batch), Is.True);
        Assert.That(batch.QueuedDatagrams, Is.EqualTo(SendQueue.Capacity));
        var slot = batch.RentSendSlot();
        Assert.That(batch.QueuedDatagrams, Is.Zero, "the full queue left first");
        slot[0] = 0xC0;
        slot[1] = 0xFF;
        Assert.That(sender.Send(slot[..2], destination, batch), Is.True);
        batch.ReturnSendSlot();
        batch.Complete();
        for (var i = 0; i < SendQueue.Capacity; i++) Assert.That(Take(collector)[1], Is.EqualTo(i), $"datagram {i} in order");
        Assert.That(Take(collector)[1], Is.EqualTo(0xFF));
    }
}
