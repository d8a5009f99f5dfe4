using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using NUnit.Framework;

namespace Overlay.Stack.Tests;

[TestFixture]
[CancelAfter(120_000)]
public sealed class TcpTransferTests
{
    /// <summary>Sends <paramref name="size"/> seeded random bytes one way and returns both SHA-256 sums.</summary>
    internal static async Task<(byte[] Sent, byte[] Received, long Bytes)> TransferAsync(Stream from, Stream to, long size, int seed, CancellationToken cancellationToken)
    {
        var sender = Task.Run(async () =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var random = new Random(seed);
            var buffer = new byte[64 * 1024];
            for (long sent = 0; sent < size;)
            {
                var chunk = (int)Math.Min(buffer.Length, size - sent);
                random.NextBytes(buffer.AsSpan(0, chunk));
                hash.AppendData(buffer, 0, chunk);
                await from.WriteAsync(buffer.AsMemory(0, chunk), cancellationToken);
                sent += chunk;
            }
            return hash.GetHashAndReset();
        }, cancellationToken);
        var receiver = Task.Run(async () =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            long received = 0;
            while (received < size)
            {
                var n = await to.ReadAsync(buffer, cancellationToken);
                if (n == 0) break;
                hash.AppendData(buffer, 0, n);
                received += n;
            }
            return (hash.GetHashAndReset(), received);
        }, cancellationToken);
        var sentHash = await sender;
        var (receivedHash, bytes) = await receiver;
        return (sentHash, receivedHash, bytes);
    }

    internal static async Task<(OverlayTcpStream Client, OverlayTcpStream Server)> ConnectAsync(StackPair pair, IPAddress to, int port, CancellationToken cancellationToken)
    {
        await using var listener = await pair.B.ListenAsync(port);
        var accept = listener.AcceptAsync(cancellationToken).AsTask();
        var client = await pair.A.ConnectAsync(to, port, cancellationToken);
        var server = await accept;
        return (client, server);
    }

    [Test]
    public async Task Data_crosses_both_ways_intact_and_a_half_close_ends_each_direction(CancellationToken cancellationToken)
    {
        await using var pair = new StackPair();
        var (client, server) = await ConnectAsync(pair, StackPair.AddressB, 8080, cancellationToken);
        Assert.That(server.RemoteEndPoint.Address, Is.EqualTo(StackPair.AddressA));

        var up = await TransferAsync(client, server, 8 << 20, 1, cancellationToken);
        var down = await TransferAsync(server, client, 8 << 20, 2, cancellationToken);
        Assert.That(up.Received, Is.EqualTo(up.Sent));
        Assert.That(down.Received, Is.EqualTo(down.Sent));

        // Half-close: the client's FIN ends the server's reading, and the server can still answer.
        client.CompleteWrites();
        var buffer = new byte[16];
        Assert.That(await server.ReadAsync(buffer, cancellationToken), Is.Zero);
        await server.WriteAsync("bye"u8.ToArray(), cancellationToken);
        server.CompleteWrites();
        Assert.That(await client.ReadAsync(buffer, cancellationToken), Is.EqualTo(3));
        Assert.That(await client.ReadAsync(buffer, cancellationToken), Is.Zero);
        await client.DisposeAsync();
        await server.DisposeAsync();
        Assert.That(pair.A.Statistics.Timeouts + pair.B.Statistics.Timeouts, Is.Zero, "a clean wire needs no retransmission timeout");
    }

    [TestCase(0.02, 0.0, 11)]
    [TestCase(0.0, 0.05, 12)]
    [TestCase(0.02, 0.05, 13)]
    public async Task A_lossy_reordering_wire_still_delivers_every_byte_in_order(double loss, double reorder, int seed, CancellationToken cancellationToken)
    {
        TestContext.Out.WriteLine($"seed {seed}, loss {loss}, reorder {reorder}");
        await using var pair = new StackPair(loss, reorder, seed);
        var (client, server) = await ConnectAsync(pair, StackPair.AddressB, 8081, cancellationToken);
        using var watchdog = new Timer(_ => TestContext.Out.WriteLine($"A: {pair.A.Describe()}\nB: {pair.B.Describe()}"), null, 5000, 5000);
        var up = await TransferAsync(client, server, 4 << 20, seed, cancellationToken);
        var down = await TransferAsync(server, client, 4 << 20, seed + 100, cancellationToken);
        Assert.That(up.Received, Is.EqualTo(up.Sent));
        Assert.That(down.Received, Is.EqualTo(down.Sent));
        TestContext.Out.WriteLine($"dropped {pair.ToB.Dropped}+{pair.ToA.Dropped} frames; A: {pair.A.Statistics.Retransmits} retransmits, " +
            $"{pair.A.Statistics.FastRetransmits} fast, {pair.A.Statistics.Timeouts} timeouts; B: {pair.B.Statistics.Retransmits}, {pair.B.Statistics.FastRetransmits}, {pair.B.Statistics.Timeouts}");
        if (loss > 0) Assert.That(pair.A.Statistics.FastRetransmits + pair.B.Statistics.FastRetransmits, Is.GreaterThan(0), "losses are mostly repaired by fast retransmit");
    }

    [Test]
    public async Task IPv6_carries_a_connection_after_neighbor_discovery(CancellationToken cancellationToken)
    {
        await using var pair = new StackPair();
        var (client, server) = await ConnectAsync(pair, StackPair.Address6B, 8082, cancellationToken);
        Assert.That(server.RemoteEndPoint.Address, Is.EqualTo(StackPair.Address6A));
        var up = await TransferAsync(client, server, 2 << 20, 3, cancellationToken);
        Assert.That(up.Received, Is.EqualTo(up.Sent));
    }

    [Test]
    public async Task A_FIN_that_overtakes_the_data_before_it_ends_the_stream_once_the_gap_is_filled(CancellationToken cancellationToken)
    {
        await using var pair = new StackPair();
        var (client, server) = await ConnectAsync(pair, StackPair.AddressB, 8084, cancellationToken);
        // The wire from the server holds back its first data segment, then lets nothing more through: the FIN behind
        // that segment arrives first, and nothing the server resends can stand in for it.
        byte[]? heldBack = null;
        var closed = false;
        pair.ToA.Filter = frame =>
        {
            if (closed) return false;
            if (heldBack is null && TcpPayloadLength(frame) > 0)
            {
                heldBack = frame;
                return false;
            }
            if ((TcpFlags(frame) & 0x01) != 0) closed = true; // the FIN itself passes
            return true;
        };
        await server.WriteAsync("overtaken "u8.ToArray(), cancellationToken);
        await server.WriteAsync("data"u8.ToArray(), cancellationToken);
        server.CompleteWrites();
        var buffer = new byte[64];
        var read = client.ReadAsync(buffer, cancellationToken).AsTask();
        while (!closed) await Task.Delay(5, cancellationToken);
        Assert.That(read.IsCompleted, Is.False, "nothing is readable while the first segment is missing");
        Assert.That(pair.A.TryWrite(heldBack), Is.True);

        var received = new List<byte>();
        for (int n; (n = await read) > 0; read = client.ReadAsync(buffer, cancellationToken).AsTask()) received.AddRange(buffer.AsSpan(0, n));
        Assert.That(received.ToArray(), Is.EqualTo("overtaken data"u8.ToArray()), "the stream ends at the FIN that came early");
        await client.DisposeAsync();
        await server.DisposeAsync();
    }

    private static int TcpWindow(byte[] frame) =>
        TcpFlags(frame) == 0 ? -1 : (frame[14 + (frame[14] & 0x0f) * 4 + 14] << 8) | frame[14 + (frame[14] & 0x0f) * 4 + 15];

    private static int TcpPayloadLength(byte[] frame)
    {
        if (frame.Length < 54 || frame[12] != 0x08 || frame[13] != 0x00 || frame[23] != 6) return 0;
        var ipHeader = (frame[14] & 0x0f) * 4;
        var total = (frame[16] << 8) | frame[17];
        return total - ipHeader - (frame[14 + ipHeader + 12] >> 4) * 4;
    }

    private static int TcpFlags(byte[] frame) =>
        frame.Length < 54 || frame[12] != 0x08 || frame[13] != 0x00 || frame[23] != 6 ? 0 : frame[14 + (frame[14] & 0x0f) * 4 + 13];

    [Test]
    public async Task A_port_nobody_listens_on_refuses_with_a_reset(CancellationToken cancellationToken)
    {
        await using var pair = new StackPair();
        var error = await Assert.ThrowsAsync<SocketException>(async () => await pair.A.ConnectAsync(StackPair.AddressB, 9, cancellationToken));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
    }

    [Test]
    public async Task A_reader_that_does_not_read_stops_the_writer_at_the_buffers_bound(CancellationToken cancellationToken)
    {
        await using var pair = new StackPair(configure: o => o with { SendBufferSize = 64 * 1024, ReceiveBufferSize = 64 * 1024 });
        var (client, server) = await ConnectAsync(pair, StackPair.AddressB, 8083, cancellationToken);
        long written = 0;
        var chunk = new byte[4096];
        var writer = Task.Run(async () =>
        {
            for (var i = 0; i < 1024; i++)
            {
                await client.WriteAsync(chunk, cancellationToken);
                Interlocked.Add(ref written, chunk.Length);
            }
        }, cancellationToken);
        // The writer fills the receiver's window and its own send buffer, then waits: nothing grows past them. The wire
        // shows when: the receiver advertises a zero window, and from then on the sender sends only window probes (at
        // most one byte each), however long the reader leaves it.
        var zeroWindow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var probes = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var probesSeen = 0;
        var largestWhileClosed = 0;
        pair.ToA.Filter = frame =>
        {
            if (TcpPayloadLength(frame) == 0 && TcpWindow(frame) == 0) zeroWindow.TrySetResult();
            return true;
        };
        pair.ToB.Filter = frame =>
        {
            if (!zeroWindow.Task.IsCompleted || TcpFlags(frame) == 0) return true;
            largestWhileClosed = Math.Max(largestWhileClosed, TcpPayloadLength(frame));
            if (++probesSeen == 3) probes.TrySetResult();
            return true;
        };
        await zeroWindow.Task.WaitAsync(cancellationToken);
        await probes.Task.WaitAsync(cancellationToken);
        Assert.That(writer.IsCompleted, Is.False);
        Assert.That(Interlocked.Read(ref written), Is.LessThanOrEqualTo(2 * 64 * 1024 + chunk.Length));
        Assert.That(largestWhileClosed, Is.LessThanOrEqualTo(1), "into a zero window the sender sends probes of at most one byte");
        // Reading drains it all; the probes kept the connection alive through the zero window.
        var buffer = new byte[65536];
        long read = 0;
        while (read < 1024 * chunk.Length) read += await server.ReadAsync(buffer, cancellationToken);
        await writer;
        Assert.That(read, Is.EqualTo(1024 * chunk.Length));
    }

    [Test]
    public async Task Disposing_the_stack_fails_a_waiting_reader(CancellationToken cancellationToken)
    {
        var pair = new StackPair();
        var (client, _) = await ConnectAsync(pair, StackPair.AddressB, 8084, cancellationToken);
        var read = client.ReadAsync(new byte[10], cancellationToken).AsTask();
        await pair.DisposeAsync();
        await Assert.ThrowsAsync<IOException>(async () => await read);
    }
}
