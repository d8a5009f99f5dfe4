using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Nat.Ice;
using Overlay.Nat.Stun;
using Overlay.Transport;

namespace Overlay.Core.Tests.Nat;

/// <summary>
/// The steady-state data path over the selected pair allocates nothing, on the sending thread or the socket's receive
/// loop. Each burst is sent from a thread that never sent through the data path before: a thread-pool thread can be
/// new at any time (the pool adds threads under load), and the first read of a [ThreadStatic] on a thread allocates
/// that thread's storage for them (264 B here), which is what made this test fail now and then while the send path
/// read one. The new thread first sends a few datagrams on a plain socket, unmeasured: .NET itself now and then
/// allocates a little (56-280 B, about one thread in 2,000) on a thread's first socket sends, with or without this
/// library (measured with Socket.SendTo and a bare sendto alone); that is the runtime's, once per thread.
/// </summary>
public class DataPathAllocationTests
{
    private const int Warmup = 200, Measured = 2000;

    /// <summary>Records the receive thread's allocation counter between the first measured datagram and the last.</summary>
    private sealed class AllocationProbe : IDatagramReceiver
    {
        private int _count;
        public long Start, End;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Count => Volatile.Read(ref _count);

        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch)
        {
            var n = ++_count;
            if (n == Warmup) Start = GC.GetAllocatedBytesForCurrentThread();
            if (n >= Warmup) End = GC.GetAllocatedBytesForCurrentThread();
            if (n == Warmup + Measured) Done.TrySetResult();
        }
    }

    [Test]
    public async Task Sending_and_receiving_datagrams_allocates_nothing([Values] bool sharedLoop)
    {
        Assume.That(EventLoop.IsSupported, "the event loop is Linux epoll's");
        using var loop = sharedLoop ? EventLoop.Start("test io") : null; // or a loop for each agent's socket
        var options = new IceOptions { NominationDelay = TimeSpan.FromMilliseconds(50), CheckRetransmission = new StunRetransmissionOptions(TimeSpan.FromMilliseconds(100), 4, 2) };
        await using var a = IceAgent.Create(options, IceRole.Controlling, loop);
        await using var b = IceAgent.Create(options, IceRole.Controlled, loop);
        if (!a.LocalCandidates.Any(c => c.Address.AddressFamily == AddressFamily.InterNetwork))
            Assert.Ignore("skipped: this machine has no non-loopback IPv4 interface");
        await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        var probe = new AllocationProbe();
        b.Channel.SetReceiver(probe);
        using var plain = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        plain.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var buffer = new byte[a.Channel.Headroom + 1200];
        buffer[a.Channel.Headroom] = 0xC0;
        long sendAllocated = 0;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (probe.Count < Warmup + Measured)
        {
            var target = Math.Min(probe.Count + 50, Warmup + Measured);
            var from = probe.Count;
            var allocated = OnNewThread(() =>
            {
                for (var i = 0; i < 50; i++) plain.SendTo(buffer.AsSpan(0, 1), SocketFlags.None, plain.LocalEndPoint!);
            }, () =>
            {
                for (var i = from; i < target; i++) a.Channel.TrySend(buffer, 1200);
            });
            if (probe.Count > Warmup) sendAllocated += allocated;
            // Paced in bursts so the loopback socket buffer never overflows; datagrams lost anyway are simply resent.
            while (probe.Count < target && !cts.IsCancellationRequested) await Task.Yield();
            cts.Token.ThrowIfCancellationRequested();
        }
        await probe.Done.Task.WaitAsync(cts.Token);
        TestContext.Out.WriteLine($"send thread: {sendAllocated} B, receive loop: {probe.End - probe.Start} B over {Measured} datagrams");
        Assert.That(sendAllocated, Is.Zero, "TrySend allocated");
        Assert.That(probe.End - probe.Start, Is.Zero, "the receive loop allocated");
    }

    /// <summary>Runs <paramref name="warmUp"/> then <paramref name="action"/> on a new thread; returns what the thread allocated in <paramref name="action"/>.</summary>
    private static long OnNewThread(Action warmUp, Action action)
    {
        long allocated = 0;
        var thread = new Thread(() =>
        {
            warmUp();
            var before = GC.GetAllocatedBytesForCurrentThread();
            action();
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        });
        thread.Start();
        thread.Join();
        return allocated;
    }
}
