using Overlay.Switching.Flood;

namespace Overlay.Switching;

/// <summary>
/// What the frames of one burst share on their way through a node (sends waiting to leave together, writes waiting to
/// be merged, scratch buffers), owned by the loop that moves the burst. The switch never looks inside: it hands the
/// batch a frame came with to the ports it sends that frame on. Null where a frame comes alone (a timer, a test).
/// </summary>
#pragma warning disable CA1040 // a marker on purpose: the switch passes the caller's batch through without knowing its type
internal interface IFrameBatch
#pragma warning restore CA1040
{
}

/// <summary>
/// Where the switch sends frames: the node's local device, or one overlay link to a neighbour switch.
/// Calls come from whichever thread delivered the frame; implementations must not block.
/// </summary>
internal interface ISwitchPort
{
    /// <summary>
    /// Sends a plain Ethernet frame; false (counted by the switch) if it could not be queued. <paramref name="batch"/> is
    /// the one the frame came with: the port may hold the frame in it until the batch completes.
    /// </summary>
    bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch);

    /// <summary>Sends a bounded-flood frame with its header (a link port); the local port is never asked.</summary>
    bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch);

    /// <summary>
    /// The longest plain frame the port can send now (a link's, what its path MTU leaves room for): a frame from the local
    /// host that is longer gets an ICMP answer instead (<see cref="Frames.PathFit"/>), and TCP SYNs are clamped to it.
    /// </summary>
    int MaxFrameLength => int.MaxValue;
}

/// <summary>Options of an <see cref="OverlaySwitch"/>.</summary>
internal sealed record SwitchOptions
{
    /// <summary>Largest frame accepted: MTU 1410 + 14 header + 4 VLAN tag by default; larger frames are dropped and counted.</summary>
    public int MaxFrameLength { get; init; } = Frames.EthernetFrame.OverlayMtu + Frames.EthernetFrame.HeaderLength + Frames.EthernetFrame.VlanTagLength;

    /// <summary>How long a learned address or path lives without traffic.</summary>
    public TimeSpan Ageing { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a multicast subscription lives without a new report (IGMP's group membership interval, RFC 2236 §8.4).</summary>
    public TimeSpan GroupAgeing { get; init; } = TimeSpan.FromSeconds(260);

    /// <summary>
    /// How often the switch asks its own host, with IGMP and MLD general queries, to report the groups it is in (RFC 3376's
    /// query interval): hosts report only when they join, so without a querier a subscription would age out after
    /// <see cref="GroupAgeing"/> and the group fall back to being flooded everywhere. The first query goes at the first
    /// <see cref="OverlaySwitch.Tick"/>, a second a quarter interval later. Zero turns the querier off.
    /// </summary>
    public TimeSpan MembershipQueryInterval { get; init; } = TimeSpan.FromSeconds(125);

    /// <summary>How long the host may take to answer a query (RFC 3376's query response interval).</summary>
    public TimeSpan MembershipQueryResponse { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Floods remembered for duplicate suppression.</summary>
    public int DuplicateCacheSize { get; init; } = 4096;

    /// <summary>
    /// Addresses learned from the overlay at most. Any member can send frames from made-up addresses; past the bound
    /// nothing new is learned (frames to unlearned addresses are flooded, so they still arrive) until entries age out.
    /// </summary>
    public int MaxLearnedAddresses { get; init; } = 65_536;

    /// <summary>Learned (source, destination) paths at most; past the bound, frames follow the destination's address entry.</summary>
    public int MaxLearnedPaths { get; init; } = 131_072;

    /// <summary>
    /// Addresses learned from one member switch at most (its host and the guests bridged behind it), so one member cannot
    /// fill the table that every member shares; past it, that member's new addresses are flooded to, not learned.
    /// </summary>
    public int MaxLearnedAddressesPerMember { get; init; } = 1_024;

    /// <summary>Multicast groups known at most, and groups one member switch may subscribe to at most.</summary>
    public int MaxMulticastGroups { get; init; } = 4_096;

    /// <inheritdoc cref="MaxMulticastGroups"/>
    public int MaxMulticastGroupsPerMember { get; init; } = 256;

    /// <summary>Addresses of the local host (its own MACs, and those of VMs or containers bridged behind it) at most.</summary>
    public int MaxLocalAddresses { get; init; } = 1_024;

    /// <summary>Hops after which a flood frame is dropped, whatever its arc says.</summary>
    public int MaxHops { get; init; } = 64;
}
