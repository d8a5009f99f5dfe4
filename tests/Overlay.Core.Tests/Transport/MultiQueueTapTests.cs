using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Engine;
using Overlay.Tap;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using Overlay.Transport;

namespace Overlay.Core.Tests.Transport;

/// <summary>
/// A multi-queue TAP served by a node's event loops, queue i by loop i: a frame a loop writes goes in through its own
/// queue, and Linux (tun's flow table, tun_flow_update) sends the host's later packets of that flow out through that
/// queue, so the loop that writes a flow's frames reads the host's answers and no other thread is woken for them.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class MultiQueueTapTests
{
    private static readonly PhysicalAddress PeerMac = PhysicalAddress.Parse("02-79-00-00-00-02");

    /// <summary>Echo replies, by sequence number, with the loop whose thread read them.</summary>
    private sealed class ReplySink(EventLoopGroup loops) : IFrameSink
    {
        public readonly ConcurrentDictionary<ushort, TaskCompletionSource<int>> Waiting = new();

        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            // Ethernet, IPv4 (no options), ICMP echo reply (type 0).
            if (frame.Length < 42 || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != 0x0800 || frame[23] != 1 || frame[34] != 0) return;
            var sequence = BinaryPrimitives.ReadUInt16BigEndian(frame[40..]);
            var reader = -1;
            var all = loops.Loops;
            for (var i = 0; i < all.Count; i++)
                if (all[i].IsLoopThread) reader = i;
            if (Waiting.TryGetValue(sequence, out var done)) done.TrySetResult(reader);
        }
    }

    [Test]
    public async Task The_hosts_answer_comes_out_of_the_queue_the_request_went_in_by_and_its_loop_reads_it()
    {
        Prerequisites.RequireNetworkNamespaces();
        using var ns = NetNamespace.Create($"otap{Random.Shared.Next(0x100000):x5}"); // swept by tests/run.sh if a run is cut short
        await using var tap = ns.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "ovmq", Queues = 2, Addresses = [InterfaceAddress.Parse("10.79.0.1/24")],
        }));
        // The peer's address is known, so the host answers at once, with no ARP on whichever queue.
        ns.Exec("ip", $"neigh replace 10.79.0.2 lladdr {string.Join(':', PeerMac.GetAddressBytes().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)))} dev ovmq nud permanent");
        using var loops = EventLoopGroup.Start("mq test", 2);
        var sink = new ReplySink(loops);
        tap.StartPolled(sink);
        var readiness = Enumerable.Range(0, 2).Select(q => new DeviceReadiness(tap, q, loops.Get(q))).ToArray();
        foreach (var r in readiness) r.Register();
        try
        {
            // A flow moves between queues: each phase writes two requests through one queue. Linux learns the flow's
            // queue after it has handed the written frame up (tun_get_user), so the answer to the first may still leave
            // by the queue the flow had before; the answer to the second leaves by the new one.
            ushort sequence = 0;
            int[] queues = [1, 0, 1, 1, 0];
            var readers = new List<int>();
            foreach (var queue in queues)
            {
                for (var i = 0; i < 2; i++)
                {
                    sequence++;
                    var reply = sink.Waiting[sequence] = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
                    using var batch = new DataPathBatch(queue); // as the loop of that queue writes a link's frame
                    Assert.That(tap.TryWrite(EchoRequest(tap.MacAddress, sequence), batch), Is.True);
                    tap.FlushWrites(batch);
                    var reader = await reply.Task.WaitAsync(TimeSpan.FromSeconds(5));
                    if (i == 1) readers.Add(reader);
                }
            }
            Assert.That(readers, Is.EqualTo(queues), $"the loop that read each phase's second answer (read by {string.Join(",", readers)}), by the queue its requests went in by");
        }
        finally
        {
            foreach (var r in readiness) r.Unregister();
        }
    }

    /// <summary>An ICMP echo request from 10.79.0.2 (<see cref="PeerMac"/>) to 10.79.0.1.</summary>
    private static byte[] EchoRequest(PhysicalAddress to, ushort sequence)
    {
        var frame = new byte[14 + 20 + 8 + 32];
        to.GetAddressBytes().CopyTo(frame, 0);
        PeerMac.GetAddressBytes().CopyTo(frame, 6);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0800);
        var ip = frame.AsSpan(14, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(frame.Length - 14));
        ip[8] = 64;
        ip[9] = 1; // ICMP
        new byte[] { 10, 79, 0, 2 }.CopyTo(ip[12..]);
        new byte[] { 10, 79, 0, 1 }.CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Checksum(ip));
        var icmp = frame.AsSpan(34);
        icmp[0] = 8;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], 0x0c14);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], sequence);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum(icmp));
        return frame;
    }

    private static ushort Checksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (var i = 0; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if ((data.Length & 1) != 0) sum += (uint)data[^1] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }
}
