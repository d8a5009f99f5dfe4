using NUnit.Framework;

namespace Overlay.Stack.Tests;

/// <summary>
/// The data path allocates nothing per segment: a steady transfer between two stacks in memory, counted process-wide
/// (every thread: the writer, the reader, both stacks' threads and the wire) with <see cref="GC.GetTotalAllocatedBytes"/>.
/// </summary>
[TestFixture]
[CancelAfter(120_000)]
public sealed class AllocationTests
{
    [Test]
    public async Task A_steady_transfer_allocates_nothing_per_segment(CancellationToken cancellationToken)
    {
        await using var pair = new StackPair();
        var (client, server) = await TcpTransferTests.ConnectAsync(pair, StackPair.AddressB, 5401, cancellationToken);
        await using var _ = client;
        await using var __ = server;
        // Writes of 16 KiB (about 11 segments each) and reads of 8 KiB: a cost per write, per read or per wake-up shows
        // up as surely as one per segment. The token is a real one, as Kestrel's and HttpClient's are.
        const int Chunk = 16 * 1024;
        const long WarmUp = 32L * 1024 * 1024;
        const long Measured = 256L * 1024 * 1024;
        long allocatedAtStart = 0, segmentsAtStart = 0, allocated = 0, segments = 0;
        var writer = Task.Run(async () =>
        {
            var buffer = new byte[Chunk];
            new Random(7).NextBytes(buffer);
            for (long sent = 0; sent < WarmUp + Measured; sent += Chunk) await client.WriteAsync(buffer, cancellationToken);
            client.CompleteWrites();
        }, cancellationToken);
        var reader = Task.Run(async () =>
        {
            var buffer = new byte[Chunk / 2];
            long received = 0;
            var started = false;
            int n;
            while ((n = await server.ReadAsync(buffer, cancellationToken)) > 0)
            {
                received += n;
                if (!started && received >= WarmUp)
                {
                    started = true;
                    segmentsAtStart = pair.A.Statistics.SegmentsOut + pair.B.Statistics.SegmentsOut;
                    allocatedAtStart = GC.GetTotalAllocatedBytes(precise: true);
                }
            }
            allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedAtStart;
            segments = pair.A.Statistics.SegmentsOut + pair.B.Statistics.SegmentsOut - segmentsAtStart;
            return received;
        }, cancellationToken);
        await writer;
        var total = await reader;

        Assert.That(total, Is.EqualTo(WarmUp + Measured));
        TestContext.Out.WriteLine($"{segments} segments (data and ACKs), {allocated} B allocated process-wide, {(double)allocated / segments:F3} B/segment");
        Assert.That(segments, Is.GreaterThan(Measured / 1500), "the measured part carried the data in segments");
        // Nothing per segment, per write, per read or per wake-up: 256 MiB is 16,384 writes, 32,768 reads and about
        // 200,000 segments, so one object (24 B or more) for the rarest of them, a write, is 393 KB or more. What is
        // allowed is a fixed amount that does not grow with the transfer (the runtime's own: thread pool threads
        // started, their timers), measured at 5-43 KB on 64 MiB; the bound is a third of one object per write.
        const long OneObjectPerWrite = Measured / Chunk * 24;
        Assert.That(allocated, Is.LessThan(OneObjectPerWrite / 3), $"{(double)allocated / segments:F3} B per segment");
    }
}
