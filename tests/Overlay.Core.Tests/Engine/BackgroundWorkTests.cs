using NUnit.Framework;
using Overlay.Core.Tests.Nat;
using Overlay.Engine;

namespace Overlay.Core.Tests.Engine;

[TestFixture]
public class BackgroundWorkTests
{
    [Test]
    public async Task A_task_is_held_until_it_ends_and_then_dropped()
    {
        var work = new BackgroundWork(new ListLoggerFactory("w").CreateLogger("w"));
        var gate = new TaskCompletionSource();
        work.Track(gate.Task);
        Assert.That(work.Count, Is.EqualTo(1));

        var idle = work.WhenIdleAsync(TimeSpan.FromMinutes(1), TimeProvider.System);
        Assert.That(idle.IsCompleted, Is.False, "disposal waits for it");
        gate.SetResult();

        Assert.That(await idle, Is.True);
        Assert.That(work.Count, Is.Zero);
    }

    [Test]
    public async Task An_unexpected_fault_is_logged_and_counted_not_thrown()
    {
        var loggers = new ListLoggerFactory("w");
        var work = new BackgroundWork(loggers.CreateLogger("w"));

        work.Track(Task.FromException(new InvalidOperationException("already broken")));
        work.Track(FailLaterAsync());

        Assert.That(await work.WhenIdleAsync(TimeSpan.FromMinutes(1), TimeProvider.System), Is.True);
        Assert.That(work.Faults, Is.EqualTo(2));
        Assert.That(loggers.Lines.Count(l => l.Contains("background work of the overlay failed", StringComparison.Ordinal)), Is.EqualTo(2));

        static async Task FailLaterAsync()
        {
            await Task.Yield();
            throw new InvalidOperationException("broke later");
        }
    }

    [Test]
    public async Task Waiting_for_idle_covers_work_started_by_work_and_gives_up_at_the_timeout()
    {
        var work = new BackgroundWork(new ListLoggerFactory("w").CreateLogger("w"));
        var first = new TaskCompletionSource();
        var second = new TaskCompletionSource();
        work.Track(first.Task.ContinueWith(_ => work.Track(second.Task), TaskScheduler.Default));
        var clock = new ManualTimeProvider();

        var idle = work.WhenIdleAsync(TimeSpan.FromSeconds(5), clock);
        first.SetResult();
        await Task.Yield();
        Assert.That(idle.IsCompleted, Is.False, "the task the first one started is still running");
        clock.Advance(TimeSpan.FromSeconds(5));

        Assert.That(await idle, Is.False, "given up at the timeout");
        Assert.That(work.Count, Is.EqualTo(1));
        second.SetResult();
    }
}
