using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Overlay.Tap;
using Overlay.Tap.Offload;

namespace Overlay.Benchmarks.Tap;

/// <summary>
/// The TAP offload's user-space work per 64 KiB, as one TCP stream through a link makes it: a TSO read cut into 48
/// frames of 1,358 bytes of payload (their IPv4 and TCP checksums written), and 45 such frames merged again into one
/// write (as a burst from a link brings them).
/// </summary>
[MemoryDiagnoser]
public class OffloadBenchmarks
{
    private const int Mss = 1358, Segments = 48, L4 = 34, HeaderLength = L4 + 32;
    private readonly byte[] _packet = new byte[HeaderLength + Segments * Mss];
    private readonly byte[] _scratch = new byte[HeaderLength];
    private readonly Sink _sink = new();
    private readonly List<byte[]> _frames = [];
    private readonly DeviceBatch _batch = new();
    private VirtioNetHeader _header;

    private sealed class Sink : IFrameSink
    {
        public List<byte[]>? Keep;
        public long Bytes;
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            Bytes += frame.Length;
            Keep?.Add(frame.ToArray());
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        var p = _packet.AsSpan();
        new Random(1).NextBytes(p[HeaderLength..]);
        byte[] macs = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        macs.CopyTo(p);
        BinaryPrimitives.WriteUInt16BigEndian(p[12..], 0x0800);
        p[14] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p[18..], 0x1234);
        p[20] = 0x40; // DF
        p[22] = 64;
        p[23] = 6;
        byte[] addresses = [10, 77, 0, 1, 10, 77, 0, 2];
        addresses.CopyTo(p[26..]);
        BinaryPrimitives.WriteUInt16BigEndian(p[L4..], 40000);
        BinaryPrimitives.WriteUInt16BigEndian(p[(L4 + 2)..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(p[(L4 + 4)..], 1);
        BinaryPrimitives.WriteUInt32BigEndian(p[(L4 + 8)..], 0xABCDEF01);
        p[L4 + 12] = 8 << 4;
        p[L4 + 13] = 0x10; // ACK
        BinaryPrimitives.WriteUInt16BigEndian(p[(L4 + 14)..], 512);
        p[L4 + 20] = 1; p[L4 + 21] = 1; p[L4 + 22] = 8; p[L4 + 23] = 10; // NOP NOP timestamps
        _header = new VirtioNetHeader
        {
            Flags = VirtioNetHeader.FlagNeedsChecksum,
            GsoType = VirtioNetHeader.GsoTcpV4,
            HeaderLength = HeaderLength,
            GsoSize = Mss,
            ChecksumStart = L4,
            ChecksumOffset = 16,
        };
        _sink.Keep = _frames;
        FrameOffload.Deliver(_header, _packet.ToArray(), _scratch, _sink);
        _sink.Keep = null;
    }

    /// <summary>
    /// Cuts the TSO read into its frames. The packet is cut where it lies, so each run after the first cuts a packet whose
    /// payload holds the headers written before; the work (every header rewritten, every byte summed) is the same.
    /// </summary>
    [Benchmark]
    public int Segment() => FrameOffload.Deliver(_header, _packet, _scratch, _sink);

    /// <summary>Merges 45 of the frames (one burst's run) into one write, and finishes it.</summary>
    [Benchmark]
    public int Coalesce()
    {
        var coalescer = _batch.Coalescer;
        coalescer.TryStart(_frames[0]);
        for (var i = 1; i < 45; i++) coalescer.TryAppend(_frames[i]);
        return coalescer.Finish().Length;
    }
}
