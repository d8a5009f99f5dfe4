using System.Net;
using NUnit.Framework;
using Overlay.Nat;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using Overlay.Transport;

namespace Overlay.Core.Tests.Nat;

/// <summary>The TURN client behind a symmetric NAT, relaying to a peer behind another one.</summary>
[NonParallelizable]
public class TurnNatLabTests
{
    private sealed class Capture : IRelayedPacketHandler
    {
        public TaskCompletionSource<StunAddress> Peer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void OnRelayedStun(ReadOnlySpan<byte> message, StunAddress peer, TurnClient relay) => Peer.TrySetResult(peer);
    }

    [Test]
    public async Task A_client_behind_a_symmetric_NAT_relays_both_ways_to_a_peer_behind_another()
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("turnserver", "coturn");
        await using var lab = await NatLab.StartAsync([NatKind.Symmetric, NatKind.Symmetric]);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var client = lab.Hosts[0].Namespace.Run(() => new StunEndpoint(UdpMux.Bind(), TimeProvider.System));
        var turn = client.AttachTurn(new TurnServer(lab.StunTurn, lab.Coturn.Username, lab.Coturn.Password));
        client.Mux.Attach(null); // a loop of its own
        using var peer = lab.Hosts[1].Namespace.Run(() => new StunEndpoint(UdpMux.Bind(), TimeProvider.System));
        peer.Mux.Attach(null); // a loop of its own

        Assert.That(await turn.AllocateAsync(cts.Token), Is.True);
        Assert.That(turn.MappedAddress!.Value.ToEndPoint().Address, Is.EqualTo(lab.Hosts[0].PublicAddress));
        var relayed = turn.RelayedAddress!.Value.ToEndPoint();
        Assert.That(await turn.CreatePermissionAsync(new StunAddress(new IPEndPoint(lab.Hosts[1].PublicAddress, 1)), cts.Token), Is.True);

        // The peer speaks first (its NAT then lets the relay's answers in); its public port is learned from the relay.
        var capture = new Capture();
        turn.Handler = capture;
        var relayedSocketAddress = peer.Mux.ToSocketAddress(relayed);
        peer.Mux.Send(new byte[] { 0x00, 1, 2, 3 }, relayedSocketAddress);
        var seen = await capture.Peer.Task.WaitAsync(cts.Token);
        Assert.That(seen.ToEndPoint().Address, Is.EqualTo(lab.Hosts[1].PublicAddress));

        var inbox = new IcePeers.Inbox();
        peer.Mux.AddRoute(relayedSocketAddress, inbox);
        var toClient = new IcePeers.Inbox();
        turn.AddDataRoute(seen, toClient);
        for (byte i = 0; i < 5; i++)
        {
            Assert.That(turn.SendTo([0xC0, i], seen), Is.True);
            Assert.That(await inbox.Received.Reader.ReadAsync(cts.Token), Is.EqualTo(new byte[] { 0xC0, i }), $"relay to peer, datagram {i}");
            peer.Mux.Send(new byte[] { 0xC1, i }, relayedSocketAddress);
            Assert.That(await toClient.Received.Reader.ReadAsync(cts.Token), Is.EqualTo(new byte[] { 0xC1, i }), $"peer to relay, datagram {i}");
        }
        await turn.DisposeAsync();
    }
}
