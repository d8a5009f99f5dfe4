using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Tap;

namespace Overlay.Stack.Tests;

/// <summary>The test wire reorders as a network does: a frame held back is late, never held for ever.</summary>
[TestFixture]
[CancelAfter(30_000)]
public sealed class WireTests
{
    [Test]
    public async Task A_held_frame_that_no_later_frame_overtakes_goes_out_after_the_time_limit(CancellationToken cancellationToken)
    {
        var arrived = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var wire = new StackPair.Wire(new Recorder(arrived), loss: 0, reorder: 1.0, seed: 1);

        wire.OnFrame(new byte[] { 1, 2, 3 }, batch: null);

        Assert.That(arrived.Task.IsCompleted, Is.False, "the frame was held back to be reordered");
        var frame = await arrived.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        Assert.That(frame, Is.EqualTo(new byte[] { 1, 2, 3 }));
        Assert.That(wire.ReleasedLate, Is.EqualTo(1));
    }

    [Test]
    public void A_held_frame_goes_out_right_after_the_next_one()
    {
        var delivered = new List<byte>();
        using var wire = new StackPair.Wire(new Recorder(null, delivered), loss: 0, reorder: 0.5, seed: 3, holdLimit: TimeSpan.FromMinutes(5));

        for (byte i = 0; i < 100; i++) wire.OnFrame(new[] { i }, batch: null);
        wire.OnFrame(new byte[] { 200 }, batch: null); // held or not, whatever was held goes out with it or before it

        lock (delivered)
        {
            var first = delivered.Where(b => b != 200).ToList();
            Assert.That(first.Order(), Is.EqualTo(Enumerable.Range(0, 100).Select(i => (byte)i)), "nothing lost, nothing stuck");
            Assert.That(first, Is.Not.Ordered, "some frames were swapped with the next");
        }
        Assert.That(wire.ReleasedLate, Is.Zero);
    }

    private sealed class Recorder(TaskCompletionSource<byte[]>? arrived, List<byte>? frames = null) : IEthernetDevice
    {
        public string Name => "recorder";

        public PhysicalAddress MacAddress => PhysicalAddress.None;

        public int Mtu => 1500;

        public EthernetDeviceCounters Counters { get; } = new();

        public string? Fault => null;

        public void Start(IFrameSink sink)
        {
        }

        public bool TryWrite(ReadOnlySpan<byte> frame)
        {
            arrived?.TrySetResult(frame.ToArray());
            if (frames is not null) lock (frames) frames.Add(frame[0]);
            return true;
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
