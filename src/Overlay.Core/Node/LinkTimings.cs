namespace Overlay;

/// <summary>How fast links are set up, watched and recovered. The defaults suit the Internet; tests shorten them.</summary>
public sealed record LinkTimings
{
    /// <summary>One signaling request (edge request, offer) waits this long for its response.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>From the first request to an authenticated link; a setup that takes longer fails and is retried with backoff.</summary>
    public TimeSpan SetupTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Keepalive period of a link (also its RTT probe).</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Silence after which a link is declared down and its path recovery starts (at most 10 s by default).</summary>
    public TimeSpan DeadPeerTimeout { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Time between ICE restarts of a link that is down.</summary>
    public TimeSpan RestartInterval { get; init; } = TimeSpan.FromSeconds(4);

    /// <summary>A link down this long is given up; the topology sets a new one up (with backoff).</summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Period of topology and switch housekeeping (retries, on-demand links, ageing).</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromSeconds(1);

    internal void Validate(string key)
    {
        void Positive(TimeSpan value, string name)
        {
            if (value <= TimeSpan.Zero) throw new OverlayConfigurationException($"{key}.{name}", $"{value} must be positive");
        }
        Positive(RequestTimeout, nameof(RequestTimeout));
        Positive(SetupTimeout, nameof(SetupTimeout));
        Positive(KeepaliveInterval, nameof(KeepaliveInterval));
        Positive(DeadPeerTimeout, nameof(DeadPeerTimeout));
        Positive(RestartInterval, nameof(RestartInterval));
        Positive(RecoveryTimeout, nameof(RecoveryTimeout));
        Positive(TickInterval, nameof(TickInterval));
        if (DeadPeerTimeout <= KeepaliveInterval)
            throw new OverlayConfigurationException($"{key}.{nameof(DeadPeerTimeout)}", "must be longer than KeepaliveInterval");
    }
}
