using System.Net.NetworkInformation;
using Overlay.Tap;

namespace Overlay.Core.Tests.Stack;

/// <summary>
/// A NIC that loses frames at random and swaps neighbours, both ways, in front of a real one (seeded, printed by the
/// test): the link between the overlay and the host behind the NIC becomes a bad one. A frame held back to be
/// reordered goes out after the next frame, or after <see cref="Shuffler.HoldLimit"/> when none follows, as on a real
/// network: it is late, never stuck.
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

    /// <summary>Held frames that no later frame released, let go by the time limit.</summary>
    public long ReleasedLate => _toHost.ReleasedLate + _fromHost.ReleasedLate;

    public void Start(IFrameSink sink) => inner.Start(new Sink(sink, _fromHost));

    public bool TryWrite(ReadOnlySpan<byte> frame)
    {
        _toHost.Pass(frame, f => inner.TryWrite(f));
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        _toHost.Dispose();
        _fromHost.Dispose();
        await inner.DisposeAsync();
    }

    private sealed class Sink(IFrameSink sink, Shuffler shuffler) : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch) => shuffler.Pass(frame, f => sink.OnFrame(f, null));
    }

    internal sealed class Shuffler : IDisposable
    {
        /// <summary>How long a held frame waits for a later one to overtake it, at most.</summary>
        public static readonly TimeSpan HoldLimit = TimeSpan.FromMilliseconds(5);

        private readonly Random _random;
        private readonly double _loss;
        private readonly double _reorder;
        private readonly Lock _lock = new();
        private readonly byte[] _held = new byte[70_000];
        private readonly Timer _release;
        private int _heldLength;
        private Deliver? _heldDeliver;
        private long _heldSince;
        private long _dropped;
        private long _releasedLate;

        public Shuffler(double loss, double reorder, int seed)
        {
            _random = new Random(seed);
            _loss = loss;
            _reorder = reorder;
            _release = new Timer(static s => ((Shuffler)s!).ReleaseIfLate(), this, Timeout.Infinite, Timeout.Infinite);
        }

        public long Dropped => Interlocked.Read(ref _dropped);

        public long ReleasedLate => Interlocked.Read(ref _releasedLate);

        public delegate void Deliver(ReadOnlySpan<byte> frame);

        public void Pass(ReadOnlySpan<byte> frame, Deliver deliver)
        {
            lock (_lock)
            {
                if (_random.NextDouble() < _loss)
                {
                    _dropped++;
                    return;
                }
                if (_heldLength == 0 && frame.Length <= _held.Length && _random.NextDouble() < _reorder)
                {
                    frame.CopyTo(_held);
                    _heldLength = frame.Length;
                    _heldDeliver = deliver;
                    _heldSince = Environment.TickCount64;
                    _release.Change(HoldLimit, Timeout.InfiniteTimeSpan);
                    return;
                }
                deliver(frame);
                ReleaseHeld();
            }
        }

        private void ReleaseIfLate()
        {
            lock (_lock)
            {
                // The timer may fire for a frame a later one already released, or early for a frame held since.
                if (_heldLength == 0) return;
                var left = HoldLimit.TotalMilliseconds - (Environment.TickCount64 - _heldSince);
                if (left > 0)
                {
                    _release.Change(TimeSpan.FromMilliseconds(left), Timeout.InfiniteTimeSpan);
                    return;
                }
                _releasedLate++;
                ReleaseHeld();
            }
        }

        private void ReleaseHeld()
        {
            if (_heldLength == 0) return;
            var deliver = _heldDeliver!;
            var length = _heldLength;
            _heldLength = 0;
            _heldDeliver = null;
            deliver(_held.AsSpan(0, length));
        }

        public void Dispose() => _release.Dispose();
    }
}
