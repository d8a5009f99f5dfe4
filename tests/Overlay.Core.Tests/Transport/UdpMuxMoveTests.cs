using System.Net;
using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Transport;

namespace Overlay.Core.Tests.Transport;

/// <summary>A link's socket moved to another of the node's loops (when it comes up): from then on that loop reads it, and nothing sent meanwhile is lost.</summary>
public class UdpMuxMoveTests
{
    /// <summary>Records which loop's thread delivered each datagram (by its first byte).</summary>
    private sealed class Recorder(EventLoopGroup loops) : IDatagramReceiver
    {
        public readonly System.Collections.Concurrent.ConcurrentQueue<(byte Tag, int Loop)> Seen = new();
        public readonly SemaphoreSlim Arrived = new(0);

        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch)
        {
            var reader = -1;
            var all = loops.Loops;
            for (var i = 0; i < all.Count; i++)
                if (all[i].IsLoopThread) reader = i;
            Seen.Enqueue((datagram[1], reader));
            Arrived.Release();
        }
    }

    [Test]
    public async Task A_moved_socket_is_read_by_its_new_loop_and_loses_nothing_sent_while_it_moved()
    {
        Assume.That(EventLoop.IsSupported, "the event loop is Linux epoll's");
        using var loops = EventLoopGroup.Start("move test", 2);
        using var mux = UdpMux.Bind();
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        sender.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var recorder = new Recorder(loops);
        mux.AddRoute(mux.ToSocketAddress((IPEndPoint)sender.LocalEndPoint!), recorder);
        mux.Attach(loops.Get(0));
        var target = new IPEndPoint(IPAddress.Loopback, mux.LocalEndPoint.Port);
        byte tag = 0;
        async Task SendAndWaitAsync(int count)
        {
            for (var i = 0; i < count; i++) sender.SendTo([0xC0, ++tag], target);
            for (var i = 0; i < count; i++) Assert.That(await recorder.Arrived.WaitAsync(TimeSpan.FromSeconds(5)), Is.True, "a datagram did not arrive");
        }

        await SendAndWaitAsync(10);
        var moving = Task.Run(() => mux.MoveTo(loops.Get(1)));
        await SendAndWaitAsync(50); // some of these arrive while the socket moves
        await moving;
        await SendAndWaitAsync(10);

        var seen = recorder.Seen.ToArray();
        Assert.That(seen.Select(s => s.Tag), Is.EqualTo(Enumerable.Range(1, 70).Select(i => (byte)i)), "every datagram, once, in order");
        Assert.That(seen.Take(10).Select(s => s.Loop), Is.All.EqualTo(0), "read by loop 0 before the move");
        Assert.That(seen.TakeLast(10).Select(s => s.Loop), Is.All.EqualTo(1), "read by loop 1 after it");
        Assert.That(mux.Loop, Is.SameAs(loops.Get(1)));
    }
}
