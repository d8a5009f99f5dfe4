namespace Overlay.Transport;

/// <summary>
/// Instants shared by a process's periodic work: the multiples of an interval on the monotonic clock of a
/// <see cref="TimeProvider"/>. Timers armed for them fire together, so an idle node's keepalives, path MTU confirmations
/// and housekeeping wake its timer thread once per instant rather than once per link and task.
/// </summary>
internal static class TimeGrid
{
    /// <summary>The time from <paramref name="timestamp"/> (a <see cref="TimeProvider"/> timestamp) until the next multiple of <paramref name="interval"/>.</summary>
    public static TimeSpan UntilNextMultiple(TimeProvider time, long timestamp, TimeSpan interval)
    {
        var period = Math.Max(1, (long)(interval.TotalSeconds * time.TimestampFrequency));
        var left = period - (timestamp % period + period) % period;
        return TimeSpan.FromSeconds((double)left / time.TimestampFrequency);
    }

    /// <summary><paramref name="delay"/> from now, moved later to the first multiple of <paramref name="interval"/> at or after it.</summary>
    public static TimeSpan AlignUp(TimeProvider time, TimeSpan delay, TimeSpan interval)
    {
        var at = time.GetTimestamp() + (long)(delay.TotalSeconds * time.TimestampFrequency);
        var period = Math.Max(1, (long)(interval.TotalSeconds * time.TimestampFrequency));
        var onGrid = (at % period + period) % period == 0;
        return onGrid ? delay : delay + UntilNextMultiple(time, at, interval);
    }
}
