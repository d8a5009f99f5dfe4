using System.Collections.Concurrent;
using NUnit.Framework;
using Overlay.Core.Tests.Nat;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Transport;

namespace Overlay.Core.Tests.Links;

public class TinCanLinkTests
{
    private sealed class Inbox : ILinkFrameReceiver
    {
        public BlockingCollection<(PacketKind Kind, byte[] Payload)> Frames { get; } = [];
        public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, DataPathBatch? batch) => Frames.Add((kind, payload.ToArray()));
    }

    private static async Task<(TinCanLink A, TinCanLink B, Inbox InA, Inbox InB)> ConnectAsync(IDatagramChannel a, IDatagramChannel b,
        TinCanLinkOptions? options = null, TimeProvider? time = null, ILinkFrameReceiver? receiverB = null)
    {
        var alice = NodeIdentity.CreateEphemeral("alice");
        var bob = NodeIdentity.CreateEphemeral("bob");
        var (inA, inB) = (new Inbox(), new Inbox());
        var linkA = new TinCanLink(a, controlling: true, alice, bob.Fingerprint, inA, options, time);
        var linkB = new TinCanLink(b, controlling: false, bob, alice.Fingerprint, receiverB ?? inB, options, time);
        await Task.WhenAll(linkA.ConnectAsync(), linkB.ConnectAsync());
        await PathMtuSearchedAsync(linkA, linkB, time);
        return (linkA, linkB, inA, inB);
    }

    /// <summary>Until its first path MTU search ends a link sends nothing above the base size: let both finish it.</summary>
    internal static async Task PathMtuSearchedAsync(TinCanLink a, TinCanLink b, TimeProvider? time)
    {
        var searched = Task.WhenAll(a.PathMtuSearched, b.PathMtuSearched);
        if (time is ManualTimeProvider manual)
        {
            // The in-memory path answers every probe at once, so each round ends without the clock moving.
            for (var i = 0; i < 100 && !searched.IsCompleted; i++) manual.Advance(TimeSpan.Zero);
        }
        await searched.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Test]
    public async Task A_link_over_a_real_ice_path_carries_frames_both_ways()
    {
        await using var agentA = IceAgent.Create(new IceOptions(), IceRole.Controlling);
        await using var agentB = IceAgent.Create(new IceOptions(), IceRole.Controlled);
        await IcePeers.ConnectAsync(agentA, agentB, TimeSpan.FromSeconds(10));
        var (a, b, inA, inB) = await ConnectAsync(agentA.Channel, agentB.Channel);
        await using (a)
        await using (b)
        {
            Assert.That((a.State, b.State), Is.EqualTo((LinkState.Connected, LinkState.Connected)));
            // Batches of 16 in flight: UDP on loopback is not lossless under an unbounded burst, a link carries Ethernet best-effort.
            for (var batch = 0; batch < 200; batch += 16)
            {
                var end = Math.Min(batch + 16, 200);
                for (var i = batch; i < end; i++)
                {
                    var frame = new byte[60 + i * 6];
                    Array.Fill(frame, (byte)i);
                    Assert.That(a.TrySend(frame), Is.True);
                    Assert.That(b.TrySend(frame, PacketKind.FloodFrame), Is.True);
                }
                for (var i = batch; i < end; i++)
                {
                    Assert.That(inB.Frames.TryTake(out var atB, 5000), Is.True, $"frame {i} to B");
                    Assert.That(inA.Frames.TryTake(out var atA, 5000), Is.True, $"frame {i} to A");
                    Assert.That((atB.Kind, atB.Payload.Length, atB.Payload[0]), Is.EqualTo((PacketKind.Frame, 60 + i * 6, (byte)i)), "UDP on loopback keeps order");
                    Assert.That((atA.Kind, atA.Payload.Length), Is.EqualTo((PacketKind.FloodFrame, 60 + i * 6)));
                }
            }
            Assert.That(a.Statistics.FramesSent, Is.EqualTo(200));
            Assert.That(b.Statistics.FramesReceived, Is.EqualTo(200));
        }
    }

    [Test]
    public async Task Oversize_tampered_and_replayed_packets_are_dropped_and_counted()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var (a, b, _, inB) = await ConnectAsync(ca, cb);
        await using (a)
        await using (b)
        {
            Assert.That(a.TrySend(new byte[1410 + 19]), Is.False);
            Assert.That(a.Statistics.DroppedOversize, Is.EqualTo(1));

            ca.Capture = true;
            Assert.That(a.TrySend(new byte[100]), Is.True);
            Assert.That(inB.Frames.TryTake(out _, 1000), Is.True);
            b.OnDatagram(ca.Last!);              // replay
            ca.Blocked = true;
            a.TrySend(new byte[100]);            // a fresh packet the attacker intercepts...
            ca.Blocked = false;
            var tampered = (byte[])ca.Last!.Clone();
            tampered[^1] ^= 1;
            b.OnDatagram(tampered);              // ...and alters: a forgery
            b.OnDatagram(ca.Last!.AsSpan(0, 20)); // truncated
            Assert.That(inB.Frames.Count, Is.Zero, "none of them reached the switch");
            var s = b.Statistics;
            Assert.That((s.DroppedReplayed, s.DroppedForged, s.DroppedMalformed), Is.EqualTo((1L, 1L, 1L)));
            Assert.That(a.TrySend(new byte[100]), Is.True);
            Assert.That(inB.Frames.TryTake(out _, 1000), Is.True, "genuine traffic still flows");
        }
    }

    /// <summary>
    /// Keepalives go at the multiples of the interval, the same instants for every link of the process (one wake-up of
    /// the timer thread for all of them when idle): a link set up between two of them sends its first keepalive at once,
    /// then at each multiple, never missing an interval.
    /// </summary>
    [Test]
    public async Task Keepalives_after_the_first_go_at_the_multiples_of_the_interval_whenever_the_link_came_up()
    {
        var time = new ManualTimeProvider();
        time.Advance(TimeSpan.FromSeconds(0.7));
        var (ca, cb) = MemoryChannel.Pair();
        var options = new TinCanLinkOptions { KeepaliveInterval = TimeSpan.FromSeconds(2), DeadPeerTimeout = TimeSpan.FromSeconds(8), PathMtuDiscovery = false };
        var (a, b, _, _) = await ConnectAsync(ca, cb, options, time);
        await using (a)
        await using (b)
        {
            var sentAt = new List<double>();
            var sent = Interlocked.Read(ref ca.Sent);
            for (var step = 0; step < 80; step++) // 8 s in steps of 0.1 s
            {
                time.Advance(TimeSpan.FromSeconds(0.1));
                var now = Interlocked.Read(ref ca.Sent);
                if (now != sent) sentAt.Add(Math.Round(time.GetTimestamp() / (double)TimeSpan.TicksPerSecond, 1));
                sent = now;
            }
            Assert.That(sentAt, Is.EqualTo(new[] { 0.8, 2.0, 4.0, 6.0, 8.0 }), "the first at once (the next tick here), then at every multiple of 2 s");
            Assert.That(a.State, Is.EqualTo(LinkState.Connected));
        }
    }

    [Test]
    public async Task A_silent_peer_is_declared_dead_within_the_timeout_and_a_new_path_revives_the_link()
    {
        var time = new ManualTimeProvider();
        var (ca, cb) = MemoryChannel.Pair();
        var options = new TinCanLinkOptions { KeepaliveInterval = TimeSpan.FromSeconds(2), DeadPeerTimeout = TimeSpan.FromSeconds(8) };
        var (a, b, _, inB) = await ConnectAsync(ca, cb, options, time);
        await using (a)
        await using (b)
        {
            var states = new BlockingCollection<LinkState>();
            a.StateChanged += (_, s) => states.Add(s);
            for (var t = 0; t < 5; t++) time.Advance(TimeSpan.FromSeconds(2)); // keepalives flow both ways
            Assert.That(a.State, Is.EqualTo(LinkState.Connected));
            Assert.That(a.Statistics.RoundTrip, Is.Not.Null, "keepalive echoes measure the RTT");

            ca.Blocked = cb.Blocked = true; // the path breaks
            for (var t = 0; t < 5; t++) time.Advance(TimeSpan.FromSeconds(2));
            Assert.That(states.TryTake(out var state, 1000) ? state : (LinkState?)null, Is.EqualTo(LinkState.Disconnected));
            Assert.That(a.Reason, Does.Contain("nothing heard"));

            // ICE found a new path: the same link, keys and identity go on over it.
            var (na, nb) = MemoryChannel.Pair();
            a.ReplaceChannel(na);
            b.ReplaceChannel(nb);
            Assert.That(a.TrySend(new byte[64]), Is.True);
            Assert.That(inB.Frames.TryTake(out _, 1000), Is.True);
            Assert.That(a.State, Is.EqualTo(LinkState.Connected));
        }
    }

    [Test]
    public async Task Sending_and_receiving_allocate_nothing_per_frame()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var counting = new CountingReceiver();
        var (a, b, _, _) = await ConnectAsync(ca, cb, time: new ManualTimeProvider(), receiverB: counting);
        await using (a)
        await using (b)
        {
            // The in-memory path delivers synchronously, so this thread runs a's send and b's receive.
            var frame = new byte[1400];
            for (var i = 0; i < 100; i++) a.TrySend(frame);
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 10_000; i++) a.TrySend(frame);
            Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, "seal + send + open + deliver");
            Assert.That(counting.Count, Is.EqualTo(10_100));
        }
    }

    [Test]
    public async Task Keys_rotate_by_packet_count_under_traffic_and_no_frame_is_lost()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var counting = new CountingReceiver();
        var options = new TinCanLinkOptions { RekeyAfterPackets = 100 };
        var (a, b, _, _) = await ConnectAsync(ca, cb, options, new ManualTimeProvider(), receiverB: counting);
        await using (a)
        await using (b)
        {
            for (var i = 0; i < 1050; i++) Assert.That(a.TrySend(new byte[200]), Is.True);
            Assert.That(counting.Count, Is.EqualTo(1050), "every frame opened across ten key changes");
            Assert.That(a.Statistics.Rotations, Is.EqualTo(10));
            Assert.That(a.Statistics.KeyEpoch, Is.EqualTo(10));
            Assert.That(b.Statistics.DroppedUnknownEpoch + b.Statistics.DroppedForged, Is.Zero);
        }
    }

    /// <summary>
    /// The header carries one byte of the key epoch. After 256 rotations (43 hours at the default interval) the keys
    /// must not come round again: the same frame sealed at epoch 256 differs from epoch 0's, and a packet recorded at
    /// epoch 0 does not open.
    /// </summary>
    [Test]
    public async Task After_256_rotations_no_key_repeats_and_a_packet_recorded_at_epoch_0_is_refused()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var counting = new CountingReceiver();
        // Two packets per epoch; no path MTU probes, which would spend packets of their own and shift the count.
        var options = new TinCanLinkOptions { RekeyAfterPackets = 2, PathMtuDiscovery = false };
        var (a, b, _, _) = await ConnectAsync(ca, cb, options, new ManualTimeProvider(), receiverB: counting);
        await using (a)
        await using (b)
        {
            ca.Capture = true;
            var frame = new byte[100];
            Assert.That(a.TrySend(frame), Is.True);
            var first = ca.Last!;    // epoch 0, sequence 0
            Assert.That(a.TrySend(new byte[100]), Is.True);
            var recorded = ca.Last!; // epoch 0, sequence 1
            for (var i = 0; i < 2 * 255; i++) Assert.That(a.TrySend(new byte[100]), Is.True);
            Assert.That(a.TrySend(frame), Is.True);
            var again = ca.Last!;    // epoch 256, sequence 0: the same header as the first packet

            Assert.That(a.Statistics.KeyEpoch, Is.EqualTo(256));
            Assert.That(again.AsSpan(0, FrameSealer.HeaderLength).ToArray(), Is.EqualTo(first.AsSpan(0, FrameSealer.HeaderLength).ToArray()),
                "the header carries the epoch's low byte, and the sequence starts again");
            Assert.That(again, Is.Not.EqualTo(first), "a new key and nonce: the same frame seals differently");
            Assert.That(counting.Count, Is.EqualTo(513), "the receiver followed every epoch");

            b.OnDatagram(recorded);
            Assert.That(counting.Count, Is.EqualTo(513), "the recorded packet does not open");
            Assert.That(b.Statistics.DroppedForged, Is.EqualTo(1), "tried with epoch 256's keys, its tag fails");
        }
    }

    [Test]
    public async Task Packets_of_the_previous_epoch_still_in_flight_open_after_the_change()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var counting = new CountingReceiver();
        var time = new ManualTimeProvider();
        var options = new TinCanLinkOptions { RekeyInterval = TimeSpan.FromSeconds(30), KeepaliveInterval = TimeSpan.FromSeconds(10), DeadPeerTimeout = TimeSpan.FromSeconds(60) };
        var (a, b, _, _) = await ConnectAsync(ca, cb, options, time, receiverB: counting);
        await using (a)
        await using (b)
        {
            ca.Capture = true;
            ca.Blocked = true;
            a.TrySend(new byte[100]);         // epoch 0, delayed in the network
            var late = ca.Last!;
            ca.Blocked = false;
            time.Advance(TimeSpan.FromSeconds(30)); // the rekey interval passes: a moves to epoch 1
            Assert.That(a.Statistics.KeyEpoch, Is.EqualTo(1));
            a.TrySend(new byte[100]);         // epoch 1 arrives first
            b.OnDatagram(late);               // then the late epoch-0 packet
            Assert.That(counting.Count, Is.EqualTo(2));
            var forged = (byte[])late.Clone();
            forged[1] = 2; forged[^1] ^= 1;   // an attacker announcing epoch 2 cannot move the receiver
            b.OnDatagram(forged);
            a.TrySend(new byte[100]);
            Assert.That(counting.Count, Is.EqualTo(3));
        }
    }

    /// <summary>
    /// The race a link's close had with its senders: the sealer's native key was freed while another thread could be
    /// sealing with it (AesGcm then throws ObjectDisposedException on that thread, or worse). Senders on several threads
    /// keep sending while the link is disposed; every send returns, true before and false after, none throws.
    /// </summary>
    [Test]
    public async Task Disposing_a_link_while_other_threads_send_on_it_faults_none_of_them()
    {
        for (var round = 0; round < 10; round++)
        {
            var (ca, cb) = MemoryChannel.Pair();
            var (a, b, _, _) = await ConnectAsync(ca, cb, receiverB: new CountingReceiver());
            await using (b)
            {
                var faults = new ConcurrentQueue<Exception>();
                var sent = 0L;
                using var stop = new CancellationTokenSource();
                var senders = Enumerable.Range(0, 3).Select(_ => Task.Factory.StartNew(() =>
                {
                    var frame = new byte[200];
                    while (!stop.IsCancellationRequested)
                    {
                        try
                        {
                            if (a.TrySend(frame)) Interlocked.Increment(ref sent);
                        }
                        catch (Exception e)
                        {
                            faults.Enqueue(e);
                            return;
                        }
                    }
                }, TaskCreationOptions.LongRunning)).ToArray();
                while (Interlocked.Read(ref sent) < 300) await Task.Yield(); // every sender is in full swing
                await a.DisposeAsync();
                var afterClose = Interlocked.Read(ref sent);
                await stop.CancelAsync();
                await Task.WhenAll(senders);
                Assert.That(faults, Is.Empty, $"round {round}: a sender faulted: {faults.FirstOrDefault()}");
                Assert.That(a.TrySend(new byte[200]), Is.False, "a closed link sends nothing");
                Assert.That(Interlocked.Read(ref sent) - afterClose, Is.LessThanOrEqualTo(3), "at most the sends already sealing when it closed");
            }
        }
    }

    private sealed class CountingReceiver : ILinkFrameReceiver
    {
        public long Count;
        public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, DataPathBatch? batch) => Count++;
    }
}
