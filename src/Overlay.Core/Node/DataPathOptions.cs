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
}
