using System.Net;
using Overlay.Nat.Stun;
using Overlay.Transport;

namespace Overlay.Nat;

/// <summary>Sends STUN straight out of the component's socket.</summary>
internal sealed class DirectStunSender(UdpMux mux) : IStunSender
{
    public void SendStun(ReadOnlySpan<byte> message, SocketAddress destination) => mux.Send(message, destination);
}
