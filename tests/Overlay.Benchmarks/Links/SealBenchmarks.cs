using BenchmarkDotNet.Attributes;
using Overlay.Links;

namespace Overlay.Benchmarks.Links;

/// <summary>
/// Sealing and opening one link packet (the <see cref="FrameSealer"/>/<see cref="FrameOpener"/> pair a link uses, replay
/// window included) with each AES-GCM implementation, at a keepalive's size and at a full frame's.
/// </summary>
[MemoryDiagnoser]
public class SealBenchmarks
{
    private FrameSealer _sealer = null!;
    private FrameOpener _opener = null!;
    private byte[] _buffer = null!;

    /// <summary>libcrypto's provider called directly, or .NET's AesGcm (the fallback).</summary>
    [Params(true, false)]
    public bool LibCrypto { get; set; }

    [Params(64, 1400)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var key = new byte[16];
        byte[] salt = [1, 2, 3, 4];
        var implementation = LibCrypto ? GcmImplementation.LibCrypto : GcmImplementation.Managed;
        _sealer = new FrameSealer(key, salt, 0, implementation);
        _opener = new FrameOpener(key, salt, 0, implementation);
        _buffer = new byte[Bytes + FrameSealer.Overhead];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sealer.Dispose();
        _opener.Dispose();
    }

    [Benchmark]
    public int Seal() => _sealer.Seal(_buffer, Bytes, PacketKind.Frame);

    [Benchmark]
    public bool SealAndOpen()
    {
        var n = _sealer.Seal(_buffer, Bytes, PacketKind.Frame);
        return _opener.TryOpen(_buffer.AsSpan(0, n), out _, out _) == OpenResult.Opened;
    }
}
