using System.Collections.Concurrent;
using NUnit.Framework;
using Overlay.Core.Tests.Nat;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Nat.Turn;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using Overlay.Transport;

namespace Overlay.Core.Tests.Links;

/// <summary>TinCan links between hosts behind real NAT routers (network namespaces, iptables, coturn).</summary>
[NonParallelizable]
public class TinCanLinkNatLabTests
{
    private sealed class Inbox : ILinkFrameReceiver
    {
        public BlockingCollection<byte[]> Frames { get; } = [];
        public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload, DataPathBatch? batch) => Frames.Add(payload.ToArray());
    }

    [Test]
    public Task Cone_to_cone_link_is_direct_and_carries_frames_both_ways() =>
        RunAsync([NatKind.Cone, NatKind.Cone], useTurn: false, async (lab, pair, a, b, inA, inB) =>
        {
            Assert.That(pair.IsRelayed, Is.False, $"{pair}");
            Assert.That(pair.Local.Type, Is.EqualTo(IceCandidateType.ServerReflexive));
            await ExchangeAsync(a, b, inA, inB);
        });

    [Test]
    public Task Symmetric_to_symmetric_link_is_relayed_and_carries_frames_both_ways() =>
        RunAsync([NatKind.Symmetric, NatKind.Symmetric], useTurn: true, async (lab, pair, a, b, inA, inB) =>
        {
            Assert.That(pair.IsRelayed, Is.True, $"{pair}");
            await ExchangeAsync(a, b, inA, inB);
        });

    [Test]
    public Task A_blocked_path_is_detected_and_the_link_recovers_when_the_block_is_lifted() =>
        RunAsync([NatKind.Cone, NatKind.Cone], useTurn: false, async (lab, pair, a, b, inA, inB) =>
        {
            var states = new BlockingCollection<LinkState>();
            a.StateChanged += (_, s) => states.Add(s);
            lab.Hosts[1].BlockUdp(); // iptables DROP at B's router, longer than the dead-peer timeout
            Assert.That(states.TryTake(out var down, TimeSpan.FromSeconds(10)) ? down : (LinkState?)null, Is.EqualTo(LinkState.Disconnected));
            lab.Hosts[1].UnblockUdp();
            Assert.That(states.TryTake(out var up, TimeSpan.FromSeconds(10)) ? up : (LinkState?)null, Is.EqualTo(LinkState.Connected));
            await ExchangeAsync(a, b, inA, inB);
        });

    /// <summary>Frames go one at a time, each awaited: links carry Ethernet best-effort, so a burst may lose some on a relay.</summary>
    private static async Task ExchangeAsync(TinCanLink a, TinCanLink b, Inbox inA, Inbox inB)
    {
        for (var i = 0; i < 50; i++)
        {
            var frame = new byte[1400];
            frame[0] = (byte)i;
            Assert.That(a.TrySend(frame), Is.True);
            Assert.That(inB.Frames.TryTake(out var atB, TimeSpan.FromSeconds(5)) ? atB[0] : -1, Is.EqualTo(i), $"frame {i} A->B");
            Assert.That(b.TrySend(frame), Is.True);
            Assert.That(inA.Frames.TryTake(out var atA, TimeSpan.FromSeconds(5)) ? atA[0] : -1, Is.EqualTo(i), $"frame {i} B->A");
        }
        await Task.CompletedTask;
    }

    private static async Task RunAsync(NatKind[] kinds, bool useTurn,
        Func<NatLab, IceSelectedPair, TinCanLink, TinCanLink, Inbox, Inbox, Task> body)
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("turnserver", "coturn");
        await using var lab = await NatLab.StartAsync(kinds);
        var options = new IceOptions
        {
            StunServers = [lab.StunTurn],
            TurnServers = useTurn ? [new TurnServer(lab.StunTurn, lab.Coturn.Username, lab.Coturn.Password)] : [],
        };
        await using var agentA = lab.Hosts[0].Namespace.Run(() => IceAgent.Create(options, IceRole.Controlling));
        await using var agentB = lab.Hosts[1].Namespace.Run(() => IceAgent.Create(options, IceRole.Controlled));
        var (pair, _) = await IcePeers.ConnectAsync(agentA, agentB, TimeSpan.FromSeconds(20));
        using var alice = NodeIdentity.CreateEphemeral("alice");
        using var bob = NodeIdentity.CreateEphemeral("bob");
        var (inA, inB) = (new Inbox(), new Inbox());
        var linkOptions = new TinCanLinkOptions { KeepaliveInterval = TimeSpan.FromMilliseconds(500), DeadPeerTimeout = TimeSpan.FromSeconds(3) };
        await using var a = new TinCanLink(agentA.Channel, true, alice, bob.Fingerprint, inA, linkOptions);
        await using var b = new TinCanLink(agentB.Channel, false, bob, alice.Fingerprint, inB, linkOptions);
        await Task.WhenAll(a.ConnectAsync(), b.ConnectAsync());
        // Until its first path MTU search ends a link sends no datagram above the base size (1280 bytes in all).
        await Task.WhenAll(a.PathMtuSearched, b.PathMtuSearched).WaitAsync(TimeSpan.FromSeconds(10));
        await body(lab, pair, a, b, inA, inB);
    }
}
