using NUnit.Framework;
using Overlay.Core.Tests.Nat;
using Overlay.Links;
using Overlay.Transport;

namespace Overlay.Core.Tests.Links;

/// <summary>
/// Path MTU discovery on a link (RFC 8899) over an in-memory path that silently drops what is larger than its MTU, as a path
/// that drops fragments and sends no ICMP does; the clock is the test's.
/// </summary>
public class PathMtuTests
{
    private sealed class Inbox : ILinkFrameReceiver
    {
        public int Count;
        public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, DataPathBatch? batch) => Interlocked.Increment(ref Count);
    }

    private static async Task<(TinCanLink A, TinCanLink B, Inbox InB)> ConnectAsync(MemoryChannel ca, MemoryChannel cb, ManualTimeProvider time, TinCanLinkOptions? options = null)
    {
        var alice = NodeIdentity.CreateEphemeral("alice");
        var bob = NodeIdentity.CreateEphemeral("bob");
        var inB = new Inbox();
        var a = new TinCanLink(ca, controlling: true, alice, bob.Fingerprint, new Inbox(), options, time);
        var b = new TinCanLink(cb, controlling: false, bob, alice.Fingerprint, inB, options, time);
        await Task.WhenAll(a.ConnectAsync(), b.ConnectAsync());
        return (a, b, inB);
    }

    /// <summary>Moves the clock in steps of 50 ms, so each probe round ends by its answers or its timeout, as it would.</summary>
    private static void Run(ManualTimeProvider time, TimeSpan span)
    {
        for (var t = TimeSpan.Zero; t < span; t += TimeSpan.FromMilliseconds(50)) time.Advance(TimeSpan.FromMilliseconds(50));
    }

    [TestCase(1280)]
    [TestCase(1400)]
    [TestCase(1450)]
    public async Task The_search_finds_the_path_mtu_and_no_frame_datagram_ever_exceeds_it(int pathMtu)
    {
        var (ca, cb) = MemoryChannel.Pair();
        ca.PathMtu = cb.PathMtu = pathMtu;
        var time = new ManualTimeProvider();
        var (a, b, inB) = await ConnectAsync(ca, cb, time);
        await using (a)
        await using (b)
        {
            // Before any answer the link keeps to the base size: 1280 in all.
            Assert.That(a.PathMtu, Is.EqualTo(1280));
            Run(time, TimeSpan.FromSeconds(10));
            Assert.That(a.PathMtuSearched.IsCompleted, Is.True, "the search ended");
            TestContext.Out.WriteLine($"path {pathMtu}: found {a.PathMtu} after {a.Statistics.PathMtuProbes} probes");
            Assert.That(a.PathMtu, Is.InRange(pathMtu - PathMtuDiscovery.Granularity, pathMtu));
            Assert.That(a.Statistics.PathMtuProbes, Is.LessThanOrEqualTo(7 * PathMtuDiscovery.Ladder), "a handful of rounds, not a linear scan");

            // Every frame up to the discovered size passes; one byte more is refused at the sender and counted, never sent.
            var fits = a.MaxFrameLength;
            Assert.That(fits, Is.EqualTo(a.PathMtu - 28 - FrameSealer.Overhead));
            Assert.That(a.TrySend(new byte[fits]), Is.True);
            Assert.That(a.TrySend(new byte[fits + 1]), Is.False);
            Assert.That(inB.Count, Is.EqualTo(1));
            Assert.That(a.Statistics.DroppedTooBigForPath, Is.EqualTo(1));
            Assert.That(ca.LargestFrameSent, Is.LessThanOrEqualTo(pathMtu));
        }
    }

    [Test]
    public async Task A_path_that_shrinks_is_a_black_hole_found_by_confirmation_probes_and_the_link_searches_again()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var time = new ManualTimeProvider();
        var (a, b, inB) = await ConnectAsync(ca, cb, time, new TinCanLinkOptions { PathMtuConfirmInterval = TimeSpan.FromSeconds(5) });
        await using (a)
        await using (b)
        {
            Run(time, TimeSpan.FromSeconds(3));
            var before = a.PathMtu;
            Assert.That(before, Is.GreaterThan(1500), "an unlimited path: the search stops at what the largest frame needs");

            // A route change: the path now takes 1300 and drops the rest without a word.
            ca.PathMtu = cb.PathMtu = 1300;
            Run(time, TimeSpan.FromSeconds(12));
            Assert.That(a.Statistics.PathMtuBlackHoles, Is.EqualTo(1));
            Assert.That(a.PathMtu, Is.InRange(1300 - PathMtuDiscovery.Granularity, 1300), "back to the base, then searched up to the new path");
            Assert.That(a.TrySend(new byte[a.MaxFrameLength]), Is.True);
            Assert.That(inB.Count, Is.EqualTo(1));
        }
    }

    [Test]
    public async Task A_peer_that_never_answers_probes_gets_base_sized_datagrams()
    {
        var (ca, cb) = MemoryChannel.Pair();
        ca.DropProbes = cb.DropProbes = true; // as a peer from before probing: it drops kinds it does not know
        var time = new ManualTimeProvider();
        var (a, b, inB) = await ConnectAsync(ca, cb, time);
        await using (a)
        await using (b)
        {
            Run(time, TimeSpan.FromSeconds(10));
            Assert.That(a.PathMtuSearched.IsCompleted, Is.True);
            Assert.That(a.PathMtu, Is.EqualTo(1280));
            Assert.That(a.TrySend(new byte[1280 - 28 - FrameSealer.Overhead]), Is.True);
            Assert.That(a.TrySend(new byte[1400]), Is.False);
            Assert.That(ca.LargestFrameSent, Is.LessThanOrEqualTo(1280));
            Assert.That(inB.Count, Is.EqualTo(1));
        }
    }

    [Test]
    public async Task A_probe_from_an_older_peer_kind_is_counted_malformed_by_nobody_and_acks_are_small()
    {
        // The answer to a probe is small whatever the probe's size, so a way back smaller than the way out does not lose it.
        var (ca, cb) = MemoryChannel.Pair();
        cb.PathMtu = 1280; // b -> a takes only the base size
        var time = new ManualTimeProvider();
        var (a, b, _) = await ConnectAsync(ca, cb, time);
        await using (a)
        await using (b)
        {
            Run(time, TimeSpan.FromSeconds(10));
            Assert.That(a.PathMtu, Is.GreaterThan(1500), "a -> b is unlimited, and b's answers came back through the small way");
            Assert.That(b.PathMtu, Is.EqualTo(1280));
            Assert.That(a.Statistics.DroppedMalformed + b.Statistics.DroppedMalformed, Is.Zero);
        }
    }

    [Test]
    public async Task Confirmations_go_at_keepalive_instants_every_interval_rounded_up_to_one()
    {
        // An idle node's links confirm their path MTU with the keepalives (multiples of the keepalive interval on the
        // monotonic clock), so 30 links' confirmations do not each wake the timer thread; 15 s between them becomes 16.
        var (ca, cb) = MemoryChannel.Pair();
        var time = new ManualTimeProvider();
        time.Advance(TimeSpan.FromSeconds(0.3)); // the link comes up between two keepalive instants
        var options = new TinCanLinkOptions { KeepaliveInterval = TimeSpan.FromSeconds(2), PathMtuConfirmInterval = TimeSpan.FromSeconds(15) };
        var (a, b, _) = await ConnectAsync(ca, cb, time, options);
        await using (a)
        await using (b)
        {
            Run(time, TimeSpan.FromSeconds(4));
            Assert.That(a.PathMtuSearched.IsCompleted, Is.True);
            var probes = a.Statistics.PathMtuProbes;
            var confirmedAt = new List<double>();
            for (var step = 0; step < 1200; step++) // 60 s in steps of 50 ms
            {
                time.Advance(TimeSpan.FromMilliseconds(50));
                if (a.Statistics.PathMtuProbes == probes) continue;
                Assert.That(a.Statistics.PathMtuProbes - probes, Is.EqualTo(1), "a confirmation is one probe of the size in use");
                probes = a.Statistics.PathMtuProbes;
                confirmedAt.Add(Math.Round(time.GetTimestamp() / (double)TimeSpan.TicksPerSecond, 2));
            }
            Assert.That(confirmedAt, Has.Count.EqualTo(4), string.Join(", ", confirmedAt));
            Assert.That(confirmedAt, Has.All.Matches<double>(t => Math.Abs(t / 2 - Math.Round(t / 2)) < 1e-9), "at multiples of the keepalive interval: " + string.Join(", ", confirmedAt));
            Assert.That(confirmedAt.Zip(confirmedAt.Skip(1), (x, y) => y - x), Has.All.EqualTo(16.0), "15 s rounded up to the next keepalive instant");
            Assert.That(a.Statistics.PathMtuBlackHoles, Is.Zero);
        }
    }

    /// <summary>
    /// A timer due at once may fire before the call that created it has returned: on a busy machine the creating thread
    /// can be preempted between the two. The link must still search. (A first round run in that window once rescheduled a
    /// timer the link had not stored yet, and the search never went on: a CI run timed out waiting for it.)
    /// </summary>
    [Test]
    public async Task The_search_goes_on_when_its_timer_fires_before_the_link_has_stored_it()
    {
        var (ca, cb) = MemoryChannel.Pair();
        var alice = NodeIdentity.CreateEphemeral("alice");
        var bob = NodeIdentity.CreateEphemeral("bob");
        var eager = new EagerTimeProvider();
        await using var a = new TinCanLink(ca, controlling: true, alice, bob.Fingerprint, new Inbox(), time: eager);
        await using var b = new TinCanLink(cb, controlling: false, bob, alice.Fingerprint, new Inbox(), time: eager);
        await Task.WhenAll(a.ConnectAsync(), b.ConnectAsync());
        Assert.That(eager.FiredInline, Is.GreaterThan(0), "the provider ran a callback before returning its timer");
        // The search needs a few rounds answered at once on this path: well under a second whatever the machine's load.
        var searched = Task.WhenAll(a.PathMtuSearched, b.PathMtuSearched);
        Assert.That(await Task.WhenAny(searched, Task.Delay(TimeSpan.FromSeconds(10))), Is.SameAs(searched), "both searches ended");
        Assert.That(a.PathMtu, Is.GreaterThan(TinCanLink.BasePathMtu), "the search went past the base size");
    }

    /// <summary>The system clock, except that a timer due at once runs its first callback before <c>CreateTimer</c> returns.</summary>
    private sealed class EagerTimeProvider : TimeProvider
    {
        public int FiredInline;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime != TimeSpan.Zero) return System.CreateTimer(callback, state, dueTime, period);
            Interlocked.Increment(ref FiredInline);
            callback(state);
            return System.CreateTimer(callback, state, period, period);
        }
    }
}
