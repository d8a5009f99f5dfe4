using Overlay.Nat.Stun;

namespace Overlay.Nat.Turn;

/// <summary>Receives STUN messages (ICE checks) that arrived through the TURN relay from a peer.</summary>
internal interface IRelayedPacketHandler
{
    void OnRelayedStun(ReadOnlySpan<byte> message, StunAddress peer, TurnClient relay);
}
