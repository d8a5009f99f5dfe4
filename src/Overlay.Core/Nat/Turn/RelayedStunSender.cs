using System.Net;
using Overlay.Nat.Stun;

namespace Overlay.Nat.Turn;

/// <summary>Sends STUN (ICE checks and their responses) to one peer through the TURN relay.</summary>
internal sealed class RelayedStunSender(TurnClient turn, StunAddress peer) : IStunSender
{
    public void SendStun(ReadOnlySpan<byte> message, SocketAddress destination) => turn.SendTo(message, peer);
}
