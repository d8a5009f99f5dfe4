using System.Diagnostics;
using System.Net;
using NUnit.Framework;

namespace Overlay.Stack.Tests;

[TestFixture]
[CancelAfter(300_000)]
public sealed class HostileInputTests
{
    private const ulong MacA = 0x02_00_00_00_00_0AUL;
    private const ulong MacB = 0x02_00_00_00_00_0BUL;

    /// <summary>
    /// The attack: a peer on the overlay sends malformed and mutated packets of every kind (truncated, bits flipped in
    /// headers and options, lengths that lie, half of them with checksums repaired so they reach the parsers behind the
    /// checksum). Nothing may throw, drops are counted by reason, and an open connection carries on unharmed.
    /// </summary>
    [Test]
    public async Task A_million_mutated_packets_are_dropped_and_counted_and_an_open_connection_is_unaffected(CancellationToken cancellationToken)
    {
        const int packets = 1_000_000;
        var seed = Environment.TickCount;
        TestContext.Out.WriteLine($"seed {seed}");
        await using var pair = new StackPair();
        var (client, server) = await TcpTransferTests.ConnectAsync(pair, StackPair.AddressB, 8090, cancellationToken);

        // Seeds: what A really sends to B: TCP (IPv4 and IPv6: handshake, data, FIN), UDP on both, ARP, Neighbor
        // Solicitation, and an ICMP echo request made by hand.
        var seeds = new List<byte[]>();
        pair.ToB.Filter = frame =>
        {
            lock (seeds) seeds.Add(frame);
            return true;
        };
        foreach (var address in new[] { StackPair.AddressB, StackPair.Address6B })
        {
            var (c, s) = await TcpTransferTests.ConnectAsync(pair, address, 8091, cancellationToken);
            await c.WriteAsync(new byte[3000], cancellationToken);
            await s.ReadExactlyAsync(new byte[3000], cancellationToken);
            await c.DisposeAsync();
            await s.DisposeAsync();
        }
        await using (var udpB = pair.B.BindUdp(5353))
        await using (var udpA = pair.A.BindUdp())
        {
            await udpA.SendToAsync(new byte[100], new IPEndPoint(StackPair.AddressB, 5353), cancellationToken);
            await udpA.SendToAsync(new byte[100], new IPEndPoint(StackPair.Address6B, 5353), cancellationToken);
        }
        pair.ToB.Filter = null;
        seeds.Add(Packets.Echo4(MacA, MacB, StackPair.AddressA, StackPair.AddressB));
        TestContext.Out.WriteLine($"{seeds.Count} seed frames");
        Assert.That(seeds, Has.Count.GreaterThan(10));

        await using var udp = pair.B.BindUdp(5353); // so UDP seeds reach a socket (and its bounded queue)
        var random = new Random(seed);
        var buffer = new byte[2000];
        var droppedBefore = pair.B.Statistics.TotalDropped;
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < packets; i++)
        {
            var original = seeds[random.Next(seeds.Count)];
            var length = original.Length;
            original.CopyTo(buffer, 0);
            switch (random.Next(8))
            {
                case 0: // truncated
                    length = random.Next(length);
                    break;
                case 1: // lengthened with junk
                    var extra = random.Next(1, 200);
                    random.NextBytes(buffer.AsSpan(length, extra));
                    length += extra;
                    break;
                default: // bytes changed, mostly in the headers
                    for (var flips = random.Next(1, 5); flips > 0; flips--)
                    {
                        var at = random.Next(4) == 0 ? random.Next(length) : 14 + random.Next(Math.Min(length - 14, 70));
                        buffer[at] = (byte)random.Next(256);
                    }
                    break;
            }
            if (random.Next(2) == 0) Packets.FixChecksums(buffer.AsSpan(0, length));
            lock (pair.B.Gate) pair.B.OnFrame(buffer.AsSpan(0, length));
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        var dropped = pair.B.Statistics.TotalDropped - droppedBefore;
        TestContext.Out.WriteLine($"{packets} packets in {elapsed.TotalSeconds:F1} s; {dropped} dropped:");
        foreach (var reason in Enum.GetValues<StackDropReason>())
            if (pair.B.Statistics.Dropped(reason) > 0) TestContext.Out.WriteLine($"  {reason}: {pair.B.Statistics.Dropped(reason)}");
        Assert.That(dropped, Is.GreaterThan(packets * 9L / 10), "nearly every mutated packet is refused, and counted");
        Assert.That(pair.B.Statistics.HalfOpen, Is.LessThanOrEqualTo(pair.B.Options.MaxHalfOpen));

        // The connection opened before the storm still carries data both ways.
        var up = await TcpTransferTests.TransferAsync(client, server, 1 << 20, 5, cancellationToken);
        var down = await TcpTransferTests.TransferAsync(server, client, 1 << 20, 6, cancellationToken);
        Assert.That(up.Received, Is.EqualTo(up.Sent));
        Assert.That(down.Received, Is.EqualTo(down.Sent));
    }

    /// <summary>
    /// The attack: SYNs from 100,000 spoofed addresses to a listening port, to exhaust the stack's memory with
    /// half-open connections, while a real transfer runs on the same port.
    /// </summary>
    [Test]
    public async Task A_SYN_flood_from_100000_spoofed_sources_stays_within_the_half_open_bound_while_a_transfer_goes_on(CancellationToken cancellationToken)
    {
        const int sources = 100_000;
        await using var pair = new StackPair(configure: o => o with { MaxHalfOpen = 128 });
        await using var listener = await pair.B.ListenAsync(8095);
        var accept = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await pair.A.ConnectAsync(StackPair.AddressB, 8095, cancellationToken);
        await using var server = await accept;

        var transfer = TcpTransferTests.TransferAsync(client, server, 16 << 20, 7, cancellationToken);
        var maxHalfOpen = 0;
        var maxConnections = 0;
        var random = new Random(42);
        for (var i = 0; i < sources; i++)
        {
            var sourceIp = new IPAddress([10, 77, (byte)(1 + random.Next(250)), (byte)(1 + random.Next(250))]);
            var sourceMac = 0x02_00_00_00_00_00UL | (uint)random.Next();
            var syn = Packets.Tcp4(sourceMac, MacB, sourceIp, StackPair.AddressB, (ushort)random.Next(1024, 65535), 8095, (uint)random.Next(), 0, 0x02);
            // Offered as fast as the stack takes them: a full queue is waited out, so every SYN is processed.
            while (!pair.B.TryWrite(syn)) Thread.Yield();
            if (i % 64 == 0)
            {
                maxHalfOpen = Math.Max(maxHalfOpen, pair.B.Statistics.HalfOpen);
                maxConnections = Math.Max(maxConnections, pair.B.TcpConnectionCount);
            }
        }
        var (sent, received, bytes) = await transfer;
        TestContext.Out.WriteLine($"half-open at most {maxHalfOpen}, connections at most {maxConnections}, evicted {pair.B.Statistics.Dropped(StackDropReason.TcpHalfOpenEvicted)}, " +
            $"queue-full drops {pair.B.Statistics.Dropped(StackDropReason.InboundQueueFull)}");
        Assert.That(maxHalfOpen, Is.LessThanOrEqualTo(128));
        Assert.That(maxConnections, Is.LessThanOrEqualTo(128 + 1));
        Assert.That(pair.B.Statistics.Dropped(StackDropReason.TcpHalfOpenEvicted), Is.GreaterThan(sources - 1000));
        Assert.That(bytes, Is.EqualTo(16 << 20));
        Assert.That(received, Is.EqualTo(sent));
    }
}
