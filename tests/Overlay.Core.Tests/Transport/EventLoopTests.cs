using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Transport;

namespace Overlay.Core.Tests.Transport;

/// <summary>The node's data-path thread: real descriptors (UDP sockets) watched with epoll.</summary>
public class EventLoopTests
{
    /// <summary>A UDP socket the loop watches; the test decides what its handler does.</summary>
    private sealed class Source : IReadableSource, IDisposable
    {
        private readonly byte[] _buffer = new byte[2048];
        public Socket Socket { get; } = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { Blocking = false };
        public BlockingCollection<(byte Value, string? Thread)> Handled { get; } = [];
        public Action<byte>? OnEach { get; init; }

        public Source() => Socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        public int Fd => (int)Socket.Handle;

        public void Send(byte value)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            client.SendTo([value], Socket.LocalEndPoint!);
        }

        public void OnReadable(DataPathBatch batch)
        {
            while (Socket.Available > 0)
            {
                var n = Socket.Receive(_buffer);
                if (n == 0) continue;
                Handled.Add((_buffer[0], Thread.CurrentThread.Name));
                OnEach?.Invoke(_buffer[0]);
            }
        }

        public void Dispose() => Socket.Dispose();
    }

    [SetUp]
    public void RequireEpoll() => Assume.That(EventLoop.IsSupported, "the event loop is Linux epoll's");

    [Test]
    public void Each_readable_source_is_served_on_the_loop_thread()
    {
        using var loop = EventLoop.Start("test io");
        using var a = new Source();
        using var b = new Source();
        loop.Register(a.Fd, a);
        loop.Register(b.Fd, b);
        for (byte i = 1; i <= 20; i++)
        {
            a.Send(i);
            b.Send((byte)(100 + i));
        }
        foreach (var source in new[] { a, b })
            for (var i = 0; i < 20; i++)
            {
                Assert.That(source.Handled.TryTake(out var got, TimeSpan.FromSeconds(5)), Is.True, "handled");
                Assert.That(got.Thread, Is.EqualTo("test io"));
            }
    }

    [Test]
    public void Unregister_returns_only_once_the_source_is_not_running_and_it_is_not_called_again()
    {
        using var loop = EventLoop.Start("test io");
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var slow = new Source { OnEach = _ => { entered.Set(); release.Wait(); } };
        using var other = new Source();
        var registration = loop.Register(slow.Fd, slow);
        loop.Register(other.Fd, other);
        slow.Send(1);
        Assert.That(entered.Wait(TimeSpan.FromSeconds(5)), Is.True);
        var unregistering = Task.Run(() => loop.Unregister(registration));
        Assert.That(unregistering.Wait(TimeSpan.FromMilliseconds(200)), Is.False, "still inside the handler");
        release.Set();
        Assert.That(unregistering.Wait(TimeSpan.FromSeconds(5)), Is.True);
        slow.Send(2); // readable again, but no longer watched
        other.Send(3);
        Assert.That(other.Handled.TryTake(out _, TimeSpan.FromSeconds(5)), Is.True, "the loop goes on for the others");
        Assert.That(slow.Handled.Select(h => h.Value), Is.EqualTo(new byte[] { 1 }));
    }

    [Test]
    public void A_source_that_throws_is_counted_and_the_others_are_still_served()
    {
        using var loop = EventLoop.Start("test io");
        using var faulty = new Source { OnEach = _ => throw new InvalidOperationException("faulty") };
        using var healthy = new Source();
        loop.Register(faulty.Fd, faulty);
        loop.Register(healthy.Fd, healthy);
        faulty.Send(1);
        Assert.That(faulty.Handled.TryTake(out _, TimeSpan.FromSeconds(5)), Is.True);
        healthy.Send(2);
        Assert.That(healthy.Handled.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got.Value : 0, Is.EqualTo(2));
        Assert.That(loop.HandlerFaults, Is.EqualTo(1));
    }

    [Test]
    public void Unregistering_from_inside_the_handler_and_stopping_are_clean()
    {
        var loop = EventLoop.Start("test io");
        var registration = -1L;
        using var once = new Source { OnEach = _ => loop.Unregister(registration) };
        registration = loop.Register(once.Fd, once);
        once.Send(1);
        Assert.That(once.Handled.TryTake(out _, TimeSpan.FromSeconds(5)), Is.True);
        loop.Dispose();
        loop.Dispose();
        using var late = new Source();
        Assert.That(() => loop.Register(late.Fd, late), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    public void A_stale_registration_does_not_unregister_the_source_that_took_its_place()
    {
        using var loop = EventLoop.Start("test io");
        using var first = new Source();
        using var second = new Source();
        var old = loop.Register(first.Fd, first);
        loop.Unregister(old);
        loop.Register(second.Fd, second); // takes the freed place
        loop.Unregister(old);             // twice, by its old owner
        second.Send(5);
        Assert.That(second.Handled.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got.Value : 0, Is.EqualTo(5));
    }

    [Test]
    public void A_descriptor_the_kernel_refuses_is_a_clear_error()
    {
        using var loop = EventLoop.Start("test io");
        using var source = new Source();
        Assert.That(() => loop.Register(-1, source), Throws.InvalidOperationException.With.Message.Contains("refused descriptor -1"));
        loop.Register(source.Fd, source);
        source.Send(7);
        Assert.That(source.Handled.TryTake(out var got, TimeSpan.FromSeconds(5)) ? got.Value : 0, Is.EqualTo(7), "the failed registration left no hole");
    }
}
