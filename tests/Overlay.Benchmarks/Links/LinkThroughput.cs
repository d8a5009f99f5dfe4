using System.Diagnostics;
using System.Runtime.InteropServices;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Transport;

namespace Overlay.Benchmarks.Links;

/// <summary>
/// Pushes 1400-byte frames one way through one TinCan link between two network namespaces joined by a
/// veth (ICE host candidates, DTLS-derived keys, AES-GCM per frame) and prints frames/s, Gbit/s and
/// bytes allocated per frame. Needs root. usage: dotnet run -c Release --project tests/Overlay.Benchmarks -- link-throughput [seconds]
/// </summary>
internal static partial class LinkThroughput
{
    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 5;
        var tag = $"olt{Environment.ProcessId % 100000}";
        string A = $"{tag}a", B = $"{tag}b";
        try
        {
            Sh($"ip netns add {A}"); Sh($"ip netns add {B}");
            Sh($"ip link add {tag}x type veth peer name {tag}y");
            Sh($"ip link set {tag}x netns {A}"); Sh($"ip link set {tag}y netns {B}");
            Sh($"ip -n {A} addr add 192.0.2.1/24 dev {tag}x"); Sh($"ip -n {B} addr add 192.0.2.2/24 dev {tag}y");
            foreach (var (ns, dev) in new[] { (A, $"{tag}x"), (B, $"{tag}y") }) { Sh($"ip -n {ns} link set lo up"); Sh($"ip -n {ns} link set {dev} up"); }

            var options = new IceOptions { UseIPv6 = false };
            await using var agentA = InNamespace(A, () => IceAgent.Create(options, IceRole.Controlling));
            await using var agentB = InNamespace(B, () => IceAgent.Create(options, IceRole.Controlled));
            await Task.WhenAll(agentA.GatherAsync(), agentB.GatherAsync());
            agentA.SetRemoteCredentials(agentB.LocalCredentials);
            agentB.SetRemoteCredentials(agentA.LocalCredentials);
            foreach (var c in agentB.LocalCandidates) agentA.AddRemoteCandidate(c);
            foreach (var c in agentA.LocalCandidates) agentB.AddRemoteCandidate(c);
            agentA.Start(); agentB.Start();
            var pair = await agentA.WaitForSelectedPairAsync();
            await agentB.WaitForSelectedPairAsync();

            using var alice = NodeIdentity.CreateEphemeral("a");
            using var bob = NodeIdentity.CreateEphemeral("b");
            var counter = new Counter();
            await using var sender = new TinCanLink(agentA.Channel, true, alice, bob.Fingerprint, new Counter());
            await using var receiver = new TinCanLink(agentB.Channel, false, bob, alice.Fingerprint, counter);
            await Task.WhenAll(sender.ConnectAsync(), receiver.ConnectAsync());
            // Until its first path MTU search ends a link sends nothing above the base size (1280 in all): 1400-byte frames wait for it.
            await Task.WhenAll(sender.PathMtuSearched, receiver.PathMtuSearched).WaitAsync(TimeSpan.FromSeconds(10));

            var frame = new byte[1400];
            Random.Shared.NextBytes(frame);
            long sent = 0;
            var stop = Stopwatch.StartNew();
            var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            var receivedBefore = Interlocked.Read(ref counter.Frames);
            using var batch = new Overlay.Transport.DataPathBatch(); // as an event loop has for a TAP burst
            while (stop.Elapsed.TotalSeconds < seconds)
            {
                for (var i = 0; i < 32; i++) if (sender.TrySend(frame, PacketKind.Frame, batch)) sent++;
                batch.Complete();
            }
            var elapsed = stop.Elapsed.TotalSeconds;
            var received = Interlocked.Read(ref counter.Frames) - receivedBefore;
            var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
            Console.WriteLine($"path: {pair.Local.Type} {pair.Local.Address} -> {pair.Remote.Address} over a veth between two namespaces");
            Console.WriteLine($"sent     {sent / elapsed,12:N0} frames/s  {sent * 1400 * 8 / elapsed / 1e9,6:0.00} Gbit/s (1400-byte frames)");
            Console.WriteLine($"received {received / elapsed,12:N0} frames/s  {received * 1400 * 8 / elapsed / 1e9,6:0.00} Gbit/s one way");
            Console.WriteLine($"allocated {(double)allocated / Math.Max(1, sent + received):0.00} B per frame (process-wide, {allocated:N0} B in all)");
            Console.WriteLine($"receiver drops: forged {receiver.Statistics.DroppedForged}, replayed {receiver.Statistics.DroppedReplayed}, too old {receiver.Statistics.DroppedTooOld}");
            return 0;
        }
        finally
        {
            Sh($"ip netns del {A}", check: false); Sh($"ip netns del {B}", check: false);
        }
    }

    private sealed class Counter : ILinkFrameReceiver
    {
        public long Frames;
        public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, DataPathBatch? batch) => Interlocked.Increment(ref Frames);
    }

    private static T InNamespace<T>(string name, Func<T> action)
    {
        using var original = File.OpenHandle("/proc/thread-self/ns/net");
        using var target = File.OpenHandle($"/var/run/netns/{name}");
        if (setns(target, 0x40000000) != 0) throw new InvalidOperationException($"setns {name}: {Marshal.GetLastPInvokeError()}");
        try { return action(); }
        finally { if (setns(original, 0x40000000) != 0) Environment.FailFast("cannot leave the namespace"); }
    }

    private static void Sh(string command, bool check = true)
    {
        var parts = command.Split(' ', 2);
        using var p = Process.Start(new ProcessStartInfo(parts[0], parts[1]) { RedirectStandardError = true })!;
        p.WaitForExit();
        if (check && p.ExitCode != 0) throw new InvalidOperationException($"{command}: {p.StandardError.ReadToEnd()}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(Microsoft.Win32.SafeHandles.SafeFileHandle fd, int nstype);
}
