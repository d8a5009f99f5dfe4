namespace Overlay;

/// <summary>
/// How the node moves frames (the data path: TAP, switch, links, UDP sockets). Immutable; the defaults are what a
/// node should run with, the switches are for measuring and for kernels or routes that misbehave.
/// </summary>
public sealed record DataPathOptions
{
    /// <summary>
    /// Whether link sockets send runs of equal-size datagrams as one segmented message (UDP GSO, Linux 4.18+) and take
    /// coalesced runs from the kernel (UDP GRO, Linux 5.0+). A kernel or route that refuses it turns it off by itself;
    /// false turns both off from the start.
    /// </summary>
    public bool UdpSegmentationOffload { get; init; } = true;

    /// <summary>The most event loops a node runs (and queues its TAPs have).</summary>
    public const int MaxEventLoops = 16;

    /// <summary>
    /// Threads that move frames, one event loop per core: each link's socket is served by one of them (the least busy
    /// when the link is made) and each TAP gets one queue per loop (IFF_MULTI_QUEUE), so a node that carries traffic to
    /// several peers at once uses several cores. Default: the processor count, at most 8; 1 serves everything from one
    /// thread. At most <see cref="MaxEventLoops"/>.
    /// </summary>
    public int EventLoops { get; init; } = Math.Clamp(Environment.ProcessorCount, 1, 8);
}
