namespace Overlay.Signaling;

/// <summary>What happened to a peer.</summary>
public enum PeerChange
{
    /// <summary>The peer announced itself for the overlay (or changed its address).</summary>
    Joined,
    /// <summary>
    /// The peer went unavailable or stopped serving the overlay. Advisory: a link to it whose keepalives pass stays up
    /// (a server restart sends this for everyone).
    /// </summary>
    Left,
    /// <summary>This node's own signaling connection was lost; the peer's state is unknown until reconnect.</summary>
    SignalingLost,
    /// <summary>The peer's account left the roster, or the overlay's roster groups: it is no longer a member, and its links end.</summary>
    Revoked,
}

/// <summary>A change in an overlay's peer table.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="NodeId">The peer's node ID.</param>
/// <param name="Address">The peer's signaling address (full JID for XMPP).</param>
/// <param name="Change">What happened.</param>
public sealed record PeerEvent(string OverlayId, string NodeId, string Address, PeerChange Change);
