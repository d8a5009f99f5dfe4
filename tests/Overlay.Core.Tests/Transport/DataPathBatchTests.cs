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
}
