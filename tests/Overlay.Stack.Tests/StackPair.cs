using System.Net;
using System.Net.NetworkInformation;
using Overlay.Tap;

namespace Overlay.Stack.Tests;

/// <summary>
/// Two stacks wired frame to frame in memory, as two hosts on one Ethernet segment; the wire can drop frames at random
/// and swap neighbours (seeded, printed), and can be told to hold back or count what crosses it.
/// </summary>
internal sealed class StackPair : IAsyncDisposable
{
    public static readonly IPAddress AddressA = IPAddress.Parse("10.77.0.1");
    public static readonly IPAddress AddressB = IPAddress.Parse("10.77.0.2");
    public static readonly IPAddress Address6A = IPAddress.Parse("fd77::1");
    public static readonly IPAddress Address6B = IPAddress.Parse("fd77::2");

    public StackPair(double loss = 0, double reorder = 0, int seed = 1, Func<UserspaceStackOptions, UserspaceStackOptions>? configure = null)
    {
        configure ??= o => o;
        A = new UserspaceStack("a", configure(new UserspaceStackOptions
        {
            MacAddress = PhysicalAddress.Parse("02-00-00-00-00-0A"), IPv4Address = AddressA, IPv6Address = Address6A,
        }));
        B = new UserspaceStack("b", configure(new UserspaceStackOptions
        {
            MacAddress = PhysicalAddress.Parse("02-00-00-00-00-0B"), IPv4Address = AddressB, IPv6Address = Address6B,
        }));
        ToB = new Wire(B, loss, reorder, seed);
        ToA = new Wire(A, loss, reorder, seed + 1);
        A.Start(ToB);
        B.Start(ToA);
    }

    public UserspaceStack A { get; }

    public UserspaceStack B { get; }

    public Wire ToB { get; }

    public Wire ToA { get; }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        ToB.Dispose();
        ToA.Dispose();
    }

    /// <summary>
    /// One direction of the wire: what one stack sends, delivered to the other (maybe lost, maybe late). A frame held back
    /// goes out after the next one, or after <see cref="DefaultHoldLimit"/> (or the limit given) when none follows: late, never stuck.
    /// </summary>
    internal sealed class Wire : IFrameSink, IDisposable
    {
        /// <summary>How long a held frame waits for a later one to overtake it, at most, unless told otherwise.</summary>
        public static readonly TimeSpan DefaultHoldLimit = TimeSpan.FromMilliseconds(5);

        private readonly IEthernetDevice _destination;
        private readonly double _loss;
        private readonly double _reorder;
        private readonly Random _random;
        private readonly Lock _lock = new();
        private readonly byte[] _held = new byte[9018];
        private readonly Timer _release;
        private readonly TimeSpan _holdLimit;
        private int _heldLength;
        private long _heldSince;
        private long _frames;
        private long _dropped;
        private long _releasedLate;

        public Wire(IEthernetDevice destination, double loss, double reorder, int seed, TimeSpan? holdLimit = null)
        {
            _holdLimit = holdLimit ?? DefaultHoldLimit;
            _destination = destination;
            _loss = loss;
            _reorder = reorder;
            _random = new Random(seed);
            _release = new Timer(static s => ((Wire)s!).ReleaseIfLate(), this, Timeout.Infinite, Timeout.Infinite);
        }

        public long Frames => Interlocked.Read(ref _frames);

        public long Dropped => Interlocked.Read(ref _dropped);

        /// <summary>Held frames that no later frame released, let go by the time limit.</summary>
        public long ReleasedLate => Interlocked.Read(ref _releasedLate);

        /// <summary>When set, sees every frame; returning false drops it.</summary>
        public Func<byte[], bool>? Filter { get; set; }

        public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
        {
            Interlocked.Increment(ref _frames);
            lock (_lock)
            {
                if (Filter is { } filter && !filter(frame.ToArray())) return;
                if (_loss > 0 && _random.NextDouble() < _loss)
                {
                    Interlocked.Increment(ref _dropped);
                    return;
                }
                if (_heldLength == 0 && _reorder > 0 && _random.NextDouble() < _reorder)
                {
                    frame.CopyTo(_held);
                    _heldLength = frame.Length;
                    _heldSince = Environment.TickCount64;
                    _release.Change(_holdLimit, Timeout.InfiniteTimeSpan);
                    return;
                }
                Deliver(frame);
                ReleaseHeld();
            }
        }

        public void Dispose() => _release.Dispose();

        private void ReleaseIfLate()
        {
            lock (_lock)
            {
                // The timer may fire for a frame a later one already released, or early for a frame held since.
                if (_heldLength == 0) return;
                var left = _holdLimit.TotalMilliseconds - (Environment.TickCount64 - _heldSince);
                if (left > 0)
                {
                    _release.Change(TimeSpan.FromMilliseconds(left), Timeout.InfiniteTimeSpan);
                    return;
                }
                Interlocked.Increment(ref _releasedLate);
                ReleaseHeld();
            }
        }

        private void ReleaseHeld()
        {
            if (_heldLength == 0) return;
            var length = _heldLength;
            _heldLength = 0;
            Deliver(_held.AsSpan(0, length));
        }

        private void Deliver(ReadOnlySpan<byte> frame)
        {
            // A full queue is a loss like any other: TCP recovers it. Spin briefly so a test's wire is not lossier than asked.
            for (var i = 0; i < 2000 && !_destination.TryWrite(frame); i++) Thread.Yield();
        }
    }
}
