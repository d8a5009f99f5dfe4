namespace Overlay.Topology;

/// <summary>Limits and timings of the Symphony topology of one overlay.</summary>
internal sealed record TopologyOptions
{
    /// <summary>Successor links kept (EdgeVPN MinSuccessors).</summary>
    public int MinSuccessors { get; init; } = 2;

    /// <summary>Long-distance links; null means ⌊log2 N⌋ for N known members (EdgeVPN MaxLongDistEdges).</summary>
    public int? MaxLongDistEdges { get; init; }

    /// <summary>On-demand links at most (EdgeVPN MaxOnDemandEdges).</summary>
    public int MaxOnDemandEdges { get; init; } = 2;

    /// <summary>
    /// Links accepted only for other nodes' sake (not successor requests, which are always accepted). Null means twice
    /// the long-distance links, at least 16: Symphony's bound of 2k incoming for k outgoing, which leaves room for the
    /// spread of incoming draws (a node after a wide gap in the ring is drawn more often) as the overlay grows.
    /// </summary>
    public int? MaxIncomingEdges { get; init; }

    /// <summary>Peers always linked when present.</summary>
    public IReadOnlyList<UInt128> StaticEdges { get; init; } = [];

    /// <summary>Traffic rate (bytes/s, averaged over one tick) above which an on-demand link is asked for.</summary>
    public long OnDemandThresholdBytesPerSecond { get; init; } = 1_000_000;

    /// <summary>How long an on-demand link may stay below a quarter of the threshold before it is removed.</summary>
    public TimeSpan OnDemandIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>First retry delay after a failed link attempt; doubles per failure up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan InitialRetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest retry delay.</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(60);
}
