namespace Overlay.Engine;

/// <summary>Why a link ended. <see cref="LinkEnding.Of"/> says, for each, what ending it means.</summary>
internal enum LinkCloseReason
{
    /// <summary>Our topology no longer wants the link.</summary>
    NotWanted,

    /// <summary>Signaling says the peer left the overlay (its topology already dropped it).</summary>
    PeerLeft,

    /// <summary>The peer tore the link down (a signalled teardown naming this link).</summary>
    ClosedByPeer,

    /// <summary>Both ends asked at once and the peer's request won.</summary>
    CollisionLost,

    /// <summary>The peer started a new link, which replaces this one.</summary>
    Replaced,

    /// <summary>Not up within the setup timeout, refused, or broken during negotiation.</summary>
    SetupFailed,

    /// <summary>The peer refused our ICE restart.</summary>
    RestartRefused,

    /// <summary>Down longer than the recovery timeout.</summary>
    Unrecoverable,

    /// <summary>This node is shutting down.</summary>
    Shutdown,

    /// <summary>The peer is no longer a member of the overlay (roster removal, or it left the overlay's groups).</summary>
    Revoked,

    /// <summary>The link fell silent after signaling stopped listing the peer: both say it is gone.</summary>
    PeerGone,

    /// <summary>The peer said goodbye over the link itself (it is stopping or leaving the overlay).</summary>
    Goodbye,
}

/// <summary>What the topology hears when a link ends.</summary>
internal enum TopologyNotice
{
    /// <summary>Nothing: the topology asked for it, already knows, or a replacement link takes its place.</summary>
    None,

    /// <summary>The link went down and need not be retried early.</summary>
    Down,

    /// <summary>The link failed: the topology backs off before trying that peer again.</summary>
    Failed,
}

/// <summary>
/// The one place that decides what ending a link means: the change reported, whether the peer is told (it is not when
/// it told us, or when it already moved on), what the topology hears, and the reason's text.
/// </summary>
internal readonly record struct LinkEnding(LinkChange Change, bool NotifyPeer, TopologyNotice Topology, string Text)
{
    public static LinkEnding Of(LinkCloseReason reason, string detail = "") => reason switch
    {
        LinkCloseReason.NotWanted => new(LinkChange.Closed, true, TopologyNotice.None, "no longer wanted"),
        LinkCloseReason.PeerLeft => new(LinkChange.Closed, false, TopologyNotice.None, "the peer left the overlay"),
        LinkCloseReason.ClosedByPeer => new(LinkChange.Closed, false, TopologyNotice.Down, $"closed by the peer: {detail}"),
        LinkCloseReason.CollisionLost => new(LinkChange.Closed, false, TopologyNotice.None, "collision: the peer's request won"),
        LinkCloseReason.Replaced => new(LinkChange.Closed, false, TopologyNotice.None, "replaced by a new link from the peer"),
        LinkCloseReason.SetupFailed => new(LinkChange.Failed, true, TopologyNotice.Failed, detail),
        LinkCloseReason.RestartRefused => new(LinkChange.Failed, false, TopologyNotice.Failed, $"restart refused: {detail}"),
        LinkCloseReason.Unrecoverable => new(LinkChange.Failed, true, TopologyNotice.Failed, detail),
        LinkCloseReason.Shutdown => new(LinkChange.Closed, true, TopologyNotice.None, "the node is shutting down"),
        LinkCloseReason.Revoked => new(LinkChange.Closed, false, TopologyNotice.None, "the peer is no longer a member of the overlay"),
        LinkCloseReason.PeerGone => new(LinkChange.Closed, false, TopologyNotice.None, "silent, and signaling no longer lists the peer"),
        LinkCloseReason.Goodbye => new(LinkChange.Closed, false, TopologyNotice.Down, "the peer said goodbye"),
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };
}
