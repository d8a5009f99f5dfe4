namespace Overlay.Signaling;

/// <summary>What happened to a peer.</summary>
public enum PeerChange
{
    /// <summary>The peer announced itself for the overlay (or changed its address).</summary>
    Joined,
    /// <summary>The peer went unavailable, stopped serving the overlay, or left the roster.</summary>
    Left,
    /// <summary>This node's own signaling connection was lost; the peer's state is unknown until reconnect.</summary>
    SignalingLost,
}

/// <summary>A change in an overlay's peer table.</summary>
/// <param name="OverlayId">The overlay.</param>
/// <param name="NodeId">The peer's node ID.</param>
/// <param name="Address">The peer's signaling address (full JID for XMPP).</param>
/// <param name="Change">What happened.</param>
public sealed record PeerEvent(string OverlayId, string NodeId, string Address, PeerChange Change);
