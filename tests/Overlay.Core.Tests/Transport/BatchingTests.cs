using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using NUnit.Framework;
using Overlay.Transport;

namespace Overlay.Core.Tests.Transport;

/// <summary>sendmmsg batches and recvmmsg bursts through real sockets on loopback: nothing lost, reordered or altered.</summary>
public class BatchingTests
{
    private sealed class Collector : IDatagramReceiver
    {
        public BlockingCollection<byte[]> Datagrams { get; } = [];
        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch) => Datagrams.Add(datagram.ToArray());
    }

    [SetUp]
    public void RequireEpoll() => Assume.That(EventLoop.IsSupported, "the event loop is Linux epoll's");

    /// <summary>An event loop shared by the receiving sockets, or none (each gets a loop of its own).</summary>
    private static EventLoop? LoopFor(bool sharedLoop) => sharedLoop ? EventLoop.Start("test io") : null;

    private static void Serve(UdpMux mux, EventLoop? loop) => mux.Attach(loop);

    /// <summary>
    /// Routes <paramref name="sender"/>'s datagrams at <paramref name="receiver"/> to a new collector, starts the receiver
    /// (on <paramref name="loop"/> when given) and returns the collector and the receiver's address in the sender's form.
    /// </summary>
    private static (Collector Collector, System.Net.SocketAddress Destination) Connect(UdpMux sender, UdpMux receiver, EventLoop? loop = null)
    {
        var collector = new Collector();
        receiver.AddRoute(receiver.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, sender.LocalEndPoint.Port)), collector);
        Serve(receiver, loop);
        return (collector, sender.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, receiver.LocalEndPoint.Port)));
    }

    [Test]
    public void Batched_sends_arrive_complete_in_order_and_intact([Values] bool sharedLoop)
    {
        using var loop = LoopFor(sharedLoop);
        using var sender = UdpMux.Bind();
        using var receiver = UdpMux.Bind();
        var (collector, destination) = Connect(sender, receiver, loop);
        using var batch = new DataPathBatch();
        var random = new Random(7);
        const int total = 3000;
        var sent = 0;
        while (sent < total)
        {
            // Bursts of 1..150: smaller than, equal to and larger than the batch capacity (64), some sent early.
            var burst = Math.Min(random.Next(1, 151), total - sent);
            for (var i = 0; i < burst; i++, sent++)
            {
                Assert.That(sender.Send(Datagram(sent), destination, batch), Is.True);
                if (i % 45 == 44) batch.FlushSends();
            }
            batch.Complete();
            Assert.That(batch.QueuedDatagrams, Is.Zero, "a completed batch holds nothing");
            // Let the receiver keep up (loopback drops what overflows the socket buffer, like any UDP path).
            while (collector.Datagrams.Count < sent - 500) Thread.Yield();
        }
        for (var n = 0; n < total; n++)
        {
            Assert.That(collector.Datagrams.TryTake(out var got, TimeSpan.FromSeconds(5)), Is.True, $"datagram {n} arrived");
            Assert.That(got, Is.EqualTo(Datagram(n)), $"datagram {n} intact and in order");
        }
        Assert.That(sender.SendFailures, Is.Zero);
    }

    [Test]
    public void Runs_of_equal_datagrams_leave_segmented_and_arrive_cut_back_into_the_datagrams([Values] bool sharedLoop)
    {
        using var loop = LoopFor(sharedLoop);
        using var sender = UdpMux.Bind();
        using var receiver = UdpMux.Bind();
        var (collector, destination) = Connect(sender, receiver, loop);
        using var batch = new DataPathBatch();
        // Bursts as a TCP stream makes them: full-size frames, then a shorter one that ends the run, then an odd one out.
        var expected = new List<byte[]>();
        for (var burst = 0; burst < 50; burst++)
        {
            for (var i = 0; i < 20; i++) expected.Add(Sized(expected.Count, 1466));
            expected.Add(Sized(expected.Count, 300 + burst));
            expected.Add(Sized(expected.Count, 1466));
            foreach (var datagram in expected.Skip(expected.Count - 22)) Assert.That(sender.Send(datagram, destination, batch), Is.True);
            batch.Complete();
            while (collector.Datagrams.Count < expected.Count - 200) Thread.Yield();
        }
        foreach (var (want, n) in expected.Select((d, n) => (d, n)))
        {
            Assert.That(collector.Datagrams.TryTake(out var got, TimeSpan.FromSeconds(5)), Is.True, $"datagram {n} arrived");
            Assert.That(got, Is.EqualTo(want), $"datagram {n} intact, in order and of its own length");
        }
        Assert.That(sender.SendFailures, Is.Zero);
        Assert.That(sender.SegmentedSent, Is.GreaterThanOrEqualTo(50 * 21), "each run of equal datagrams left as one segmented send");
        Assert.That(receiver.CoalescedReceived, Is.GreaterThan(0), "the kernel handed runs over coalesced (UDP GRO)");
        Assert.That(receiver.Received, Is.EqualTo(expected.Count), "counted per datagram, not per buffer");
    }

    private static byte[] Sized(int number, int length)
    {
        var data = new byte[length];
        data[0] = 0xC1;
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(1), number);
        for (var i = 5; i < data.Length; i++) data[i] = (byte)(number * 7 + i);
        return data;
    }

    private sealed class Thrower : IDatagramReceiver
    {
        public ManualResetEventSlim Called { get; } = new();

        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch)
        {
            Called.Set();
            throw new InvalidOperationException("a faulty receiver");
        }
    }

    [Test]
    public void A_receiver_that_throws_is_counted_and_the_socket_keeps_receiving_for_the_others([Values] bool sharedLoop)
    {
        using var loop = LoopFor(sharedLoop);
        using var faulty = UdpMux.Bind();
        using var healthy = UdpMux.Bind();
        using var receiver = UdpMux.Bind();
        var thrower = new Thrower();
        var collector = new Collector();
        receiver.AddRoute(receiver.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, faulty.LocalEndPoint.Port)), thrower);
        receiver.AddRoute(receiver.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, healthy.LocalEndPoint.Port)), collector);
        Serve(receiver, loop);
        var destination = faulty.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, receiver.LocalEndPoint.Port));
        Assert.That(faulty.Send(Datagram(1), destination), Is.True);
        Assert.That(thrower.Called.Wait(TimeSpan.FromSeconds(5)), Is.True);
        Assert.That(healthy.Send(Datagram(2), destination), Is.True);
        Assert.That(collector.Datagrams.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got : null, Is.EqualTo(Datagram(2)), "the receive loop lives on");
        Assert.That(receiver.ReceiverFaults, Is.EqualTo(1));
    }

    [Test]
    public void Without_a_batch_a_send_goes_at_once()
    {
        using var sender = UdpMux.Bind();
        using var receiver = UdpMux.Bind();
        var (collector, destination) = Connect(sender, receiver);
        Assert.That(sender.Send(Datagram(1), destination), Is.True);
        Assert.That(collector.Datagrams.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got : null, Is.EqualTo(Datagram(1)));
    }

    [Test]
    public void A_batch_holds_its_datagrams_until_it_completes()
    {
        using var sender = UdpMux.Bind();
        using var receiver = UdpMux.Bind();
        var (collector, destination) = Connect(sender, receiver);
        using var batch = new DataPathBatch();
        Assert.That(sender.Send(Datagram(1), destination, batch), Is.True);
        Assert.That(sender.Send(Datagram(2), destination, batch), Is.True);
        Assert.That(batch.QueuedDatagrams, Is.EqualTo(2), "queued, not sent");
        batch.Complete();
        Assert.That(batch.QueuedDatagrams, Is.Zero);
        Assert.That(collector.Datagrams.TryTake(out var first, TimeSpan.FromSeconds(5)) ? first : null, Is.EqualTo(Datagram(1)));
        Assert.That(collector.Datagrams.TryTake(out var second, TimeSpan.FromSeconds(5)) ? second : null, Is.EqualTo(Datagram(2)));
    }

    [Test]
    public void The_frames_of_a_64_KiB_read_leave_as_one_segmented_send_of_44_and_the_one_left_over()
    {
        // 45 datagrams of 1,472 bytes, the largest a 1,500-byte IPv4 path takes (a 64 KiB TSO read at the largest MTU).
        using var sender = UdpMux.Bind();
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.ReceiveBufferSize = 1 << 20;
        var fd = socket.SafeHandle.DangerousGetHandle();
        Assume.That(MultiMessageReceiver.TryEnableCoalescing(fd), "UDP_GRO (Linux 5.0+)");
        var destination = sender.ToSocketAddress(new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)socket.LocalEndPoint!).Port));
        using var batch = new DataPathBatch();
        var expected = Enumerable.Range(0, 45).Select(n => Sized(n, 1472)).ToList();
        foreach (var datagram in expected) Assert.That(sender.Send(datagram, destination, batch), Is.True);
        batch.Complete();

        using var receiver = new MultiMessageReceiver();
        var buffers = new List<(byte[] Data, int Segment)>();
        while (buffers.Sum(b => b.Segment > 0 ? (b.Data.Length + b.Segment - 1) / b.Segment : 1) < expected.Count)
        {
            var n = receiver.Receive(fd, wait: true);
            Assert.That(n, Is.GreaterThan(0));
            for (var i = 0; i < n; i++) buffers.Add((receiver.Datagram(i).ToArray(), receiver.SegmentSize(i)));
        }
        Assert.That(sender.SegmentedSent, Is.EqualTo(44), "44 left in one run, the 45th alone");
        Assert.That(buffers[0].Data.Length, Is.EqualTo(44 * 1472), "the first run: as many as the UDP length allows");
        Assert.That(buffers[0].Segment, Is.EqualTo(1472));
        var got = buffers.SelectMany(b => b.Data.Chunk(b.Segment > 0 ? b.Segment : b.Data.Length)).ToList();
        Assert.That(got, Is.EqualTo(expected), "cut back into the datagrams, intact and in order");
    }

    /// <summary>A data-range datagram (first byte ≥ 192) of a length and content that depend on its number.</summary>
    private static byte[] Datagram(int number)
    {
        var data = new byte[8 + number % 1400];
        data[0] = 0xC0;
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(1), number);
        for (var i = 5; i < data.Length; i++) data[i] = (byte)(number * 31 + i);
        return data;
    }
}
