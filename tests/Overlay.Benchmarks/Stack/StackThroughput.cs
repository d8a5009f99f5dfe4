using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Overlay.Signaling.InProcess;
using Overlay.Stack;
using Overlay.Tap;
using Overlay.Tap.Linux;
using Overlay.TestSupport.Lab;

namespace Overlay.Benchmarks.Stack;

/// <summary>
/// One TCP stream for a number of seconds, each way the overlay can carry it, in one run:
/// <list type="number">
/// <item>between two userspace stacks wired frame to frame in memory (the stack's own cost);</item>
/// <item>between two nodes with the userspace stack over a real link (ICE host path, DTLS, AES-GCM);</item>
/// <item>from a node's userspace stack to the Linux kernel's TCP behind the other node's TAP;</item>
/// <item>kernel TCP to kernel TCP through two nodes' TAPs, the yardstick.</item>
/// </list>
/// The TAPs live in network namespaces of the run (root needed; without it those rows say so). Prints Mbit/s and the
/// bytes allocated process-wide per TCP segment (per TAP frame for the kernel row).
/// usage: dotnet run -c Release --project tests/Overlay.Benchmarks -- stack-throughput [seconds] [buffer KiB]
/// (the stacks' send and receive buffers; their default when not given)
/// </summary>
internal static class StackThroughput
{
    private const int Port = 5001;
    private static int? s_bufferKiB;

    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5;
        s_bufferKiB = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : null;
        Console.WriteLine($"one TCP stream, {seconds} s after 1 s of warm-up, {Environment.ProcessorCount} cores, stack buffers " +
            $"{(s_bufferKiB ?? new UserspaceStackOptions { MacAddress = PhysicalAddress.None }.ReceiveBufferSize / 1024)} KiB");
        await InMemoryAsync(seconds);
        await OverLinkAsync(seconds);
        if (!Environment.IsPrivilegedProcess || !File.Exists("/proc/self/ns/net"))
        {
            Console.WriteLine("userspace -> kernel and kernel -> kernel through TAPs: skipped (they need root for TAPs in network namespaces)");
            return 0;
        }
        var tag = Random.Shared.Next(0x100000).ToString("x5", CultureInfo.InvariantCulture);
        await ToKernelAsync(seconds, tag);
        await KernelToKernelAsync(seconds, tag);
        return 0;
    }

    private static async Task InMemoryAsync(int seconds)
    {
        var a = Stack("a", "02-00-00-00-01-0A", "10.90.0.1", Overlay.Switching.Frames.EthernetFrame.OverlayMtu);
        var b = Stack("b", "02-00-00-00-01-0B", "10.90.0.2", Overlay.Switching.Frames.EthernetFrame.OverlayMtu);
        a.Start(new Wire(b));
        b.Start(new Wire(a));
        await using (var listener = await b.ListenAsync(Port))
        {
            var accept = listener.AcceptAsync().AsTask();
            await using var sender = await a.ConnectAsync(IPAddress.Parse("10.90.0.2"), Port);
            await using var receiver = await accept;
            await MeasureAsync("userspace -> userspace, in-memory wire", sender, receiver, seconds, StackSegments(a, b), a);
        }
        await a.DisposeAsync();
        await b.DisposeAsync();
    }

    private static async Task OverLinkAsync(int seconds)
    {
        var hub = new InProcessSignalingHub();
        await using var server = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithUserspaceStack().WithAddress("10.91.0.1/24")).Build();
        await using var client = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithUserspaceStack().WithAddress("10.91.0.2/24")).Build();
        server.DeviceFactory = o => Stack("stack-server", "02-91-00-00-00-01", "10.91.0.1", o.NetDevice.Mtu);
        client.DeviceFactory = o => Stack("stack-client", "02-91-00-00-00-02", "10.91.0.2", o.NetDevice.Mtu);
        await StartLinkedAsync(server, client);
        var from = client.Network("bench");
        var to = server.Network("bench");
        await using var listener = await to.ListenAsync(Port);
        var accept = listener.AcceptAsync().AsTask();
        await using var sender = await from.ConnectAsync(IPAddress.Parse("10.91.0.1"), Port);
        await using var receiver = await accept;
        await MeasureAsync("userspace -> userspace, two nodes over a real link", sender, receiver, seconds, StackSegments(from, to), from);
    }

    private static async Task ToKernelAsync(int seconds, string tag)
    {
        using var ns = NetNamespace.Create($"o{tag}-spk");
        var hub = new InProcessSignalingHub();
        await using var kernelNode = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithTap("spk0").WithAddress("10.92.0.1/24")).Build();
        kernelNode.DeviceFactory = overlay => Tap(ns, "spk0", "02-92-00-00-00-01", overlay.NetDevice.Mtu, "10.92.0.1/24");
        await using var stackNode = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithUserspaceStack().WithAddress("10.92.0.2/24")).Build();
        stackNode.DeviceFactory = o => Stack("stack-bench", "02-92-00-00-00-02", "10.92.0.2", o.NetDevice.Mtu);
        await StartLinkedAsync(kernelNode, stackNode);
        var stack = stackNode.Network("bench");
        using var listener = ns.Run(() => Listen(IPAddress.Parse("10.92.0.1")));
        var accept = listener.AcceptAsync();
        await using var sender = await stack.ConnectAsync(IPAddress.Parse("10.92.0.1"), Port);
        await using var receiver = new NetworkStream(await accept, ownsSocket: true);
        await MeasureAsync("userspace -> kernel through the other node's TAP", sender, receiver, seconds,
            () => stack.Statistics.SegmentsOut + stack.Statistics.SegmentsIn, stack);
    }

    private static async Task KernelToKernelAsync(int seconds, string tag)
    {
        using var nsA = NetNamespace.Create($"o{tag}-spa");
        using var nsB = NetNamespace.Create($"o{tag}-spb");
        var hub = new InProcessSignalingHub();
        var taps = new List<IEthernetDevice>();
        await using var a = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithTap("spa0").WithAddress("10.93.0.1/24")).Build();
        a.DeviceFactory = overlay => Add(taps, Tap(nsA, "spa0", "02-93-00-00-00-01", overlay.NetDevice.Mtu, "10.93.0.1/24"));
        await using var b = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay("bench", o => o.WithTap("spb0").WithAddress("10.93.0.2/24")).Build();
        b.DeviceFactory = overlay => Add(taps, Tap(nsB, "spb0", "02-93-00-00-00-02", overlay.NetDevice.Mtu, "10.93.0.2/24"));
        await StartLinkedAsync(a, b);
        using var listener = nsB.Run(() => Listen(IPAddress.Parse("10.93.0.2")));
        var accept = listener.AcceptAsync();
        using var client = nsA.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        await client.ConnectAsync(new IPEndPoint(IPAddress.Parse("10.93.0.2"), Port));
        await using var sender = new NetworkStream(client, ownsSocket: false);
        await using var receiver = new NetworkStream(await accept, ownsSocket: true);
        await MeasureAsync("kernel -> kernel through two nodes' TAPs (B per TAP frame)", sender, receiver, seconds,
            () => taps.Sum(t => t.Counters.FramesRead + t.Counters.FramesWritten), stack: null);
    }

    /// <summary>A stack as the node makes it, with the buffer size asked for on the command line.</summary>
    private static UserspaceStack Stack(string name, string mac, string address, int mtu)
    {
        var options = new UserspaceStackOptions { MacAddress = PhysicalAddress.Parse(mac), IPv4Address = IPAddress.Parse(address), Mtu = mtu };
        if (s_bufferKiB is { } kib) options = options with { ReceiveBufferSize = kib * 1024, SendBufferSize = kib * 1024 };
        return new UserspaceStack(name, options);
    }

    private static TapDevice Tap(NetNamespace ns, string name, string mac, int mtu, string address) =>
        ns.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = name,
            MacAddress = PhysicalAddress.Parse(mac),
            Mtu = mtu,
            Addresses = [InterfaceAddress.Parse(address)],
        }));

    private static IEthernetDevice Add(List<IEthernetDevice> taps, IEthernetDevice tap)
    {
        lock (taps) taps.Add(tap);
        return tap;
    }

    private static Socket Listen(IPAddress address)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(address, Port));
        socket.Listen();
        return socket;
    }

    /// <summary>Starts both nodes and waits for the link between them.</summary>
    private static async Task StartLinkedAsync(OverlayNode first, OverlayNode second)
    {
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        second.LinkChanged += (_, e) => { if (e.Change == LinkChange.Up) up.TrySetResult(); };
        await first.StartAsync();
        await second.StartAsync();
        await up.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    private static Func<long> StackSegments(UserspaceStack from, UserspaceStack to) => () => from.Statistics.SegmentsOut + to.Statistics.SegmentsOut;

    private static async Task MeasureAsync(string what, Stream sender, Stream receiver, int seconds, Func<long> segmentCount, UserspaceStack? stack)
    {
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
            if (sender is OverlayTcpStream overlay) overlay.CompleteWrites();
            else if (sender is NetworkStream network) network.Socket.Shutdown(SocketShutdown.Send);
        });
        await Task.Delay(1000); // warm-up: slow start, JIT
        var startBytes = Interlocked.Read(ref received);
        var startSegments = segmentCount();
        var startRetransmits = stack?.Statistics.Retransmits ?? 0;
        var startAllocated = GC.GetTotalAllocatedBytes(precise: true);
        var watch = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        var bytes = Interlocked.Read(ref received) - startBytes;
        var segments = segmentCount() - startSegments;
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - startAllocated;
        var elapsed = watch.Elapsed.TotalSeconds;
        stop.Cancel();
        await writing;
        await reading;
        var retransmits = stack is null ? "" : $"; retransmits {stack.Statistics.Retransmits - startRetransmits}";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{what}: {bytes * 8 / elapsed / 1e6:F0} Mbit/s over {elapsed:F1} s; {segments} {(stack is null ? "frames" : "segments (data and ACKs)")}, " +
            $"{(double)allocated / Math.Max(1, segments):F2} B allocated per {(stack is null ? "frame" : "segment")} process-wide{retransmits}"));
    }

    private sealed class Wire(IEthernetDevice to) : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            while (!to.TryWrite(frame)) Thread.Yield();
        }
    }
}
