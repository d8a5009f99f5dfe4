using System.Net.NetworkInformation;
using Overlay.Switching.Frames;

namespace Overlay.Tap.InMemory;

/// <summary>
/// An Ethernet device with no kernel behind it, for tests, the demo and simulation. The "host" side is
/// whatever the owner attaches: <see cref="SendFromHost"/> plays a frame the host sent (it reaches the
/// device's sink), and frames written to the device reach <see cref="HostReceiver"/>.
/// </summary>
public sealed class InMemoryEthernetDevice : IEthernetDevice
{
    private IFrameSink? _sink;
    private volatile bool _disposed;

    /// <summary>Creates a device.</summary>
    public InMemoryEthernetDevice(string name, PhysicalAddress macAddress, int mtu = EthernetFrame.OverlayMtu)
    {
        ArgumentNullException.ThrowIfNull(macAddress);
        if (mtu is < 68 or > 65535) throw new TapDeviceException(TapError.InvalidMtu, $"MTU {mtu} of {name} is outside 68..65535");
        Name = name;
        MacAddress = macAddress;
        Mtu = mtu;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public PhysicalAddress MacAddress { get; }

    /// <inheritdoc />
    public int Mtu { get; }

    /// <inheritdoc />
    public EthernetDeviceCounters Counters { get; } = new();

    /// <inheritdoc />
    public string? Fault => null;

    /// <summary>Receives the frames written to the device (the host's side). Set before traffic flows.</summary>
    public IFrameSink? HostReceiver { get; set; }

    /// <inheritdoc />
    public void Start(IFrameSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        if (Interlocked.CompareExchange(ref _sink, sink, null) is not null)
            throw new InvalidOperationException($"{Name} is already started");
    }

    /// <summary>Plays a frame sent by the host: it is delivered to the device's sink on the caller's thread.</summary>
    public bool SendFromHost(ReadOnlySpan<byte> frame)
    {
        var sink = _sink;
        if (_disposed || sink is null || frame.Length < 14 || frame.Length > Mtu + 18)
        {
            Interlocked.Increment(ref Counters.ReadErrorsValue);
            return false;
        }
        Interlocked.Increment(ref Counters.FramesReadValue);
        Interlocked.Add(ref Counters.BytesReadValue, frame.Length);
        sink.OnFrame(frame, batch: null);
        return true;
    }

    /// <inheritdoc />
    public bool TryWrite(ReadOnlySpan<byte> frame)
    {
        var host = HostReceiver;
        if (_disposed || host is null || frame.Length < 14 || frame.Length > Mtu + 18)
        {
            Interlocked.Increment(ref Counters.WriteDropsValue);
            return false;
        }
        Interlocked.Increment(ref Counters.FramesWrittenValue);
        Interlocked.Add(ref Counters.BytesWrittenValue, frame.Length);
        host.OnFrame(frame, batch: null);
        return true;
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _disposed = true;
        return ValueTask.CompletedTask;
    }
}
