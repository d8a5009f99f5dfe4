using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using Overlay.Signaling.InProcess;
using Overlay.Stack;
using Overlay.Tap;

namespace Overlay.Benchmarks.Stack;

/// <summary>
/// One TCP stream through the userspace stack, for a number of seconds: between two stacks wired frame to frame in
/// memory (the stack's own cost), and between two nodes with the stack over a real link (ICE host path, DTLS, AES-GCM).
/// Prints Mbit/s and the bytes allocated process-wide per TCP segment during the run.
/// usage: dotnet run -c Release --project tests/Overlay.Benchmarks -- stack-throughput [seconds]
/// </summary>
internal static class StackThroughput
{
    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 5;
        await InMemoryAsync(seconds);
        await OverLinkAsync(seconds);
        return 0;
    }

    private static async Task InMemoryAsync(int seconds)
    {
        var a = new UserspaceStack("a", new UserspaceStackOptions { MacAddress = PhysicalAddress.Parse("02-00-00-00-01-0A"), IPv4Address = IPAddress.Parse("10.90.0.1") });
        var b = new UserspaceStack("b", new UserspaceStackOptions { MacAddress = PhysicalAddress.Parse("02-00-00-00-01-0B"), IPv4Address = IPAddress.Parse("10.90.0.2") });
        a.Start(new Wire(b));
        b.Start(new Wire(a));
        await MeasureAsync("userspace -> userspace, in-memory wire", a, b, IPAddress.Parse("10.90.0.2"), seconds);
        await a.DisposeAsync();
        await b.DisposeAsync();
    }

    private static async Task OverLinkAsync(int seconds)
    {
        var hub = new InProcessSignalingHub();
        await using var server = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithUserspaceStack().WithAddress("10.91.0.1/24")).Build();
        await using var client = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithUserspaceStack().WithAddress("10.91.0.2/24")).Build();
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.LinkChanged += (_, e) => { if (e.Change == LinkChange.Up) up.TrySetResult(); };
        await server.StartAsync();
        await client.StartAsync();
        await up.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await MeasureAsync("userspace -> userspace, two nodes over a real link", client.Network("bench"), server.Network("bench"), IPAddress.Parse("10.91.0.1"), seconds);
    }

    private static async Task MeasureAsync(string what, UserspaceStack from, UserspaceStack to, IPAddress address, int seconds)
    {
        await using var listener = await to.ListenAsync(5001);
        var accept = listener.AcceptAsync().AsTask();
        await using var sender = await from.ConnectAsync(address, 5001);
        await using var receiver = await accept;
        using var stop = new CancellationTokenSource();
        long received = 0;
        var reading = Task.Run(async () =>
        {
            var buffer = new byte[256 * 1024];
            int n;
            while ((n = await receiver.ReadAsync(buffer)) > 0) Interlocked.Add(ref received, n);
        });
        var writing = Task.Run(async () =>
        {
            var buffer = new byte[256 * 1024];
            Random.Shared.NextBytes(buffer);
            while (!stop.IsCancellationRequested) await sender.WriteAsync(buffer);
            sender.CompleteWrites();
        });
        await Task.Delay(1000); // warm-up: slow start, JIT
        var startBytes = Interlocked.Read(ref received);
        var startSegments = from.Statistics.SegmentsOut + to.Statistics.SegmentsOut;
        var startAllocated = GC.GetTotalAllocatedBytes(precise: true);
        var watch = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        var bytes = Interlocked.Read(ref received) - startBytes;
        var segments = from.Statistics.SegmentsOut + to.Statistics.SegmentsOut - startSegments;
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - startAllocated;
        var elapsed = watch.Elapsed.TotalSeconds;
        stop.Cancel();
        await writing;
        await reading;
        Console.WriteLine($"{what}: {bytes * 8 / elapsed / 1e6:F0} Mbit/s over {elapsed:F1} s; {segments} segments (data and ACKs), " +
            $"{(double)allocated / Math.Max(1, segments):F2} B allocated per segment process-wide; retransmits {from.Statistics.Retransmits}");
    }

    private sealed class Wire(IEthernetDevice to) : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            while (!to.TryWrite(frame)) Thread.Yield();
        }
    }
}
