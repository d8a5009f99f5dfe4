using System.Net.NetworkInformation;
using Overlay.Tap;

namespace Overlay.Core.Tests.Stack;

/// <summary>
/// A NIC that loses frames at random and swaps neighbours, both ways, in front of a real one (seeded, printed by the
/// test): the link between the overlay and the host behind the NIC becomes a bad one.
/// </summary>
internal sealed class LossyDevice(IEthernetDevice inner, double loss, double reorder, int seed) : IEthernetDevice
{
    private readonly Shuffler _toHost = new(loss, reorder, seed);
    private readonly Shuffler _fromHost = new(loss, reorder, seed + 1);

    public string Name => inner.Name;

    public PhysicalAddress MacAddress => inner.MacAddress;

    public int Mtu => inner.Mtu;

    public EthernetDeviceCounters Counters => inner.Counters;

    public string? Fault => inner.Fault;

    public long Dropped => _toHost.Dropped + _fromHost.Dropped;

    public void Start(IFrameSink sink) => inner.Start(new Sink(sink, _fromHost));

    public bool TryWrite(ReadOnlySpan<byte> frame)
    {
        _toHost.Pass(frame, f => inner.TryWrite(f));
        return true;
    }

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    private sealed class Sink(IFrameSink sink, Shuffler shuffler) : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => shuffler.Pass(frame, f => sink.OnFrame(f, null));
    }

    private sealed class Shuffler(double loss, double reorder, int seed)
    {
        private readonly Random _random = new(seed);
        private readonly Lock _lock = new();
        private readonly byte[] _held = new byte[70_000];
        private int _heldLength;
        private long _dropped;

        public long Dropped => Interlocked.Read(ref _dropped);

        public delegate void Deliver(ReadOnlySpan<byte> frame);

        public void Pass(ReadOnlySpan<byte> frame, Deliver deliver)
        {
            lock (_lock)
            {
                if (_random.NextDouble() < loss)
                {
                    _dropped++;
                    return;
                }
                if (_heldLength == 0 && frame.Length <= _held.Length && _random.NextDouble() < reorder)
                {
                    frame.CopyTo(_held);
                    _heldLength = frame.Length;
                    return;
                }
                deliver(frame);
                if (_heldLength > 0)
                {
                    deliver(_held.AsSpan(0, _heldLength));
                    _heldLength = 0;
                }
            }
        }
    }
}
