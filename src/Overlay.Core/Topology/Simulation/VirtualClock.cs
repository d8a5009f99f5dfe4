namespace Overlay.Topology.Simulation;

/// <summary>A clock that moves only when told to: the simulation's time.</summary>
internal sealed class VirtualClock : TimeProvider
{
    private DateTimeOffset _now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <inheritdoc />
    public override DateTimeOffset GetUtcNow() => _now;

    /// <summary>Moves the clock to <paramref name="time"/> (never backwards).</summary>
    public void AdvanceTo(DateTimeOffset time)
    {
        if (time > _now) _now = time;
    }
}
