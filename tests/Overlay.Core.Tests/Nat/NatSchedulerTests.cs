using NUnit.Framework;
using Overlay.Nat;

namespace Overlay.Core.Tests.Nat;

/// <summary>The one timer behind a component's STUN, ICE and TURN work, against a clock whose timers count milliseconds.</summary>
public class NatSchedulerTests
{
    /// <summary>A clock like the system's: timers take whole milliseconds, and the test decides when they fire.</summary>
    private sealed class MillisecondClock : TimeProvider
    {
        public long Now;
        public readonly List<TimeSpan> Requested = [];
        public TimerCallback? Callback;
        public object? State;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Now;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Callback = callback;
            State = state;
            return new Timer(this);
        }

        public void Fire() => Callback!(State);

        private sealed class Timer(MillisecondClock clock) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                if (dueTime != Timeout.InfiniteTimeSpan) clock.Requested.Add(dueTime);
                return true;
            }

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }

    private sealed class Work : IScheduled
    {
        public readonly List<long> Runs = [];
        public void OnDue(long now) => Runs.Add(now);
    }

    [Test]
    public void Cancelled_work_never_runs_and_the_rest_does()
    {
        var clock = new MillisecondClock();
        using var scheduler = new NatScheduler(clock);
        Work kept = new(), cancelled = new();
        scheduler.In(TimeSpan.FromMilliseconds(10), cancelled);
        scheduler.In(TimeSpan.FromMilliseconds(20), kept);
        scheduler.Cancel(cancelled);
        scheduler.Cancel(new Work()); // never queued: nothing happens
        Assert.That(scheduler.Count, Is.EqualTo(1));
        clock.Now = TimeSpan.FromMilliseconds(20).Ticks;
        clock.Fire();
        Assert.That(cancelled.Runs, Is.Empty);
        Assert.That(kept.Runs, Has.Count.EqualTo(1));
    }

    [Test]
    public void A_fractional_delay_is_armed_rounded_up_to_whole_milliseconds()
    {
        var clock = new MillisecondClock();
        using var scheduler = new NatScheduler(clock);
        scheduler.In(TimeSpan.FromMilliseconds(49.6), new Work());
        Assert.That(clock.Requested, Is.EqualTo(new[] { TimeSpan.FromMilliseconds(50) }), "a 49 ms timer would fire before the work is due");
    }

    [Test]
    public void Work_due_within_the_timer_granularity_runs_in_that_firing_and_sees_its_due_time()
    {
        var clock = new MillisecondClock();
        using var scheduler = new NatScheduler(clock);
        var work = new Work();
        var due = scheduler.After(TimeSpan.FromMilliseconds(50));
        scheduler.At(due, work);
        clock.Now = due - TimeSpan.FromMilliseconds(0.6).Ticks; // the system timer came back a fraction early
        clock.Fire();
        Assert.That(work.Runs, Is.EqualTo(new[] { due }), "run now, told its own due time");
        Assert.That(clock.Requested, Has.Count.EqualTo(1), "no re-arm for the remaining fraction");
    }

    [Test]
    public void Work_due_later_is_left_for_a_later_firing()
    {
        var clock = new MillisecondClock();
        using var scheduler = new NatScheduler(clock);
        var soon = new Work();
        var later = new Work();
        scheduler.In(TimeSpan.FromMilliseconds(10), soon);
        scheduler.In(TimeSpan.FromMilliseconds(30), later);
        clock.Now = TimeSpan.FromMilliseconds(10).Ticks;
        clock.Fire();
        Assert.That(soon.Runs, Has.Count.EqualTo(1));
        Assert.That(later.Runs, Is.Empty);
        Assert.That(clock.Requested[^1], Is.EqualTo(TimeSpan.FromMilliseconds(20)), "re-armed for the next one");
        Assert.That(scheduler.Firings, Is.EqualTo(1));
    }
}
