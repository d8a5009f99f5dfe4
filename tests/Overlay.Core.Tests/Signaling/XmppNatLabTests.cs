using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.Xmpp;
using Overlay.Switching;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Signaling;

/// <summary>Signaling between hosts behind different NATs, through prosody on the lab's "internet".</summary>
[TestFixture]
[NonParallelizable]
public sealed class XmppNatLabTests
{
    [Test]
    public async Task Nodes_behind_cone_and_symmetric_nats_discover_each_other_and_negotiate_through_prosody()
    {
        Prerequisites.RequireNetworkNamespaces();
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Symmetric], xmpp: true);
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();

        XmppChannelOptions OptionsFor(LabHost host, string account, string nodeId) => new()
        {
            Jid = $"{account}@{lab.XmppDomain}",
            Password = ProsodyServer.Password,
            Host = lab.Xmpp.Address.ToString(),
            Port = lab.Xmpp.Port,
            TrustedCaCertificatePath = lab.CaCertificatePath,
            NodeId = nodeId,
            Overlays = ["ovl1"],
            // The socket is created inside the host's namespace; it stays there for its lifetime.
            SocketFactory = () => host.Namespace.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)),
        };

        await using var alice = new XmppSignalingChannel(OptionsFor(lab.Hosts[0], "node1", a));
        await using var bob = new XmppSignalingChannel(OptionsFor(lab.Hosts[1], "node2", b));
        await alice.ConnectAsync();
        await bob.ConnectAsync();
        await SignalingBehaviourTests.WaitForPeerAsync(alice, "ovl1", b);
        await SignalingBehaviourTests.WaitForPeerAsync(bob, "ovl1", a);

        using var cts = new CancellationTokenSource(SignalingBehaviourTests.Wait);
        var answering = Task.Run(async () =>
        {
            await foreach (var incoming in bob.ReadIncomingAsync(cts.Token))
            {
                var offer = (LinkOffer)incoming.Message;
                await incoming.RespondAsync(new LinkAnswer("ovl1", offer.LinkId, "u2", "p2", [$"candidate:1 1 udp 2130706431 {lab.Hosts[1].Address} 5000 typ host"], "sha-256 00", "02:00:00:00:00:02"), cts.Token);
                return;
            }
        });
        var answer = await alice.RequestAsync(b, new LinkOffer("ovl1", "nat-link", "u1", "p1",
            [$"candidate:1 1 udp 2130706431 {lab.Hosts[0].Address} 5000 typ host", $"candidate:2 1 udp 1694498815 {lab.Hosts[0].PublicAddress} 40000 typ srflx raddr {lab.Hosts[0].Address} rport 5000"],
            "sha-256 11", "02:00:00:00:00:01"));
        await answering;

        Assert.That(answer, Is.InstanceOf<LinkAnswer>());
        Assert.That(((LinkAnswer)answer).Candidates[0], Does.Contain(lab.Hosts[1].Address.ToString()));
    }
}
