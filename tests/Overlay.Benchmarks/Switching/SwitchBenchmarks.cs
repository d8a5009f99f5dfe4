using BenchmarkDotNet.Attributes;
using Overlay.Switching;
using Overlay.Switching.Flood;

namespace Overlay.Benchmarks.Switching;

/// <summary>
/// Forwarding cost of the switch per frame, on one core: a known unicast path from the local port to a
/// link, a unicast frame arriving from a link for the local host, and a broadcast flood originated to
/// 8 neighbours. Each invocation forwards <see cref="Batch"/> frames (target ≥ 20 M known-unicast
/// frames/s per core, 0 B per frame).
/// </summary>
[MemoryDiagnoser]
public class SwitchBenchmarks
{
    private const int Batch = 1000;
    private readonly byte[] _toRemote = new byte[1414];
    private readonly byte[] _toLocal = new byte[1414];
    private readonly byte[] _broadcast = new byte[1414];
    private OverlaySwitch _switch = null!;
    private NodeId _neighbour;

    private sealed class NullPort : ISwitchPort
    {
        public long Frames;
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) { Frames++; return true; }
        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) { Frames++; return true; }
    }

    [GlobalSetup]
    public void Setup()
    {
        const ulong localMac = 0x0200_0000_0001, remoteMac = 0x0200_0000_0002;
        var self = new NodeId(1000);
        _switch = new OverlaySwitch(self, new NullPort(), localMacs: [localMac]);
        for (var i = 1; i <= 8; i++) _switch.AddLink(new NodeId((UInt128)i << 120), new NullPort());
        _neighbour = new NodeId((UInt128)3 << 120);
        Write(_toRemote, remoteMac, localMac);
        Write(_toLocal, localMac, remoteMac);
        Write(_broadcast, 0xFFFF_FFFF_FFFF, localMac);
        // The remote host announces itself by broadcast through the neighbour: its path is learned.
        _switch.OnLinkFlood(_neighbour, new FloodHeader(_neighbour, _neighbour, 1, 1, FloodType.Broadcast), _toLocal.AsSpan().ToArray() is var b && Write(b, 0xFFFF_FFFF_FFFF, remoteMac) ? b : b);
        _switch.OnLocalFrame(_toRemote);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public void KnownUnicastLocalToLink()
    {
        for (var i = 0; i < Batch; i++) _switch.OnLocalFrame(_toRemote);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public void UnicastLinkToLocal()
    {
        for (var i = 0; i < Batch; i++) _switch.OnLinkFrame(_neighbour, _toLocal);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public void BroadcastFloodToEightNeighbours()
    {
        for (var i = 0; i < Batch; i++) _switch.OnLocalFrame(_broadcast);
    }

    private static bool Write(byte[] frame, ulong destination, ulong source)
    {
        for (var i = 0; i < 6; i++)
        {
            frame[i] = (byte)(destination >> (40 - 8 * i));
            frame[6 + i] = (byte)(source >> (40 - 8 * i));
        }
        frame[12] = 0x08;
        frame[13] = 0x00;
        return true;
    }
}
