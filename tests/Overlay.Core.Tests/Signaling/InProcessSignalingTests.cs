using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.InProcess;
using Overlay.Switching;

namespace Overlay.Core.Tests.Signaling;

/// <summary>The shared signaling behaviour, run against the in-process hub.</summary>
[TestFixture]
public sealed class InProcessSignalingTests : SignalingBehaviourTests
{
    private InProcessSignalingHub _hub = null!;

    [SetUp]
    public void CreateHub()
    {
        _hub = new InProcessSignalingHub();
        for (var i = 1; i <= 8; i++) _hub.AddToGroup("overlay1", $"node{i}");
        for (var i = 5; i <= 8; i++) _hub.AddToGroup("overlay2", $"node{i}");
    }

    private protected override async Task<SignalingChannelBase> CreateMemberAsync(int index, string nodeId, IReadOnlyList<string> overlays,
        IReadOnlyDictionary<string, IReadOnlyList<string>>? overlayGroups = null)
    {
        var channel = _hub.CreateChannel(new InProcessChannelOptions
        {
            Account = $"node{index}", NodeId = nodeId, Overlays = overlays, OverlayGroups = overlayGroups ?? new Dictionary<string, IReadOnlyList<string>>(),
        });
        await channel.ConnectAsync();
        return channel;
    }

    private protected override async Task<SignalingChannelBase> CreateOutsiderAsync(string nodeId, IReadOnlyList<string> overlays)
    {
        var channel = _hub.CreateChannel(new InProcessChannelOptions { Account = "outsider", NodeId = nodeId, Overlays = overlays });
        await channel.ConnectAsync();
        return channel;
    }

    private protected override Task SendRawAsync(SignalingChannelBase from, string toAddress, string payload)
    {
        Assert.That(((InProcessSignalingChannel)from).SendRaw(toAddress, payload), Is.True);
        return Task.CompletedTask;
    }

    [Test]
    public async Task Leaving_the_roster_group_removes_the_peer()
    {
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        var alice = Track(await CreateMemberAsync(1, a, ["ovl1"]));
        Track(await CreateMemberAsync(2, b, ["ovl1"]));
        await WaitForPeerAsync(alice, "ovl1", b);

        _hub.RemoveFromGroup("overlay1", "node2");

        await WaitForPeerAsync(alice, "ovl1", b, present: false);
    }

    [Test]
    public async Task Joining_an_overlays_roster_group_makes_an_announced_member_a_peer_there()
    {
        string one = Switching.NodeId.NewRandom().ToString(), five = Switching.NodeId.NewRandom().ToString();
        var node5 = Track(await CreateMemberAsync(5, five, ["ovlA", "ovlB"],
            new Dictionary<string, IReadOnlyList<string>> { ["ovlA"] = ["overlay1"], ["ovlB"] = ["overlay2"] }));
        Track(await CreateMemberAsync(1, one, ["ovlA", "ovlB"]));
        await WaitForPeerAsync(node5, "ovlA", one);
        Assert.That(node5.GetPeers("ovlB"), Does.Not.ContainKey(one));

        _hub.AddToGroup("overlay2", "node1");
        await WaitForPeerAsync(node5, "ovlB", one);

        _hub.RemoveFromGroup("overlay2", "node1");
        await WaitForPeerAsync(node5, "ovlB", one, present: false);
        Assert.That(node5.GetPeers("ovlA"), Does.ContainKey(one), "still a member of A");
    }

    [Test]
    public void Options_are_validated_with_the_setting_named()
    {
        var ex = Assert.Throws<ArgumentException>(() => _hub.CreateChannel(new InProcessChannelOptions { Account = "node1", NodeId = "ABC", Overlays = ["o"] }));
        Assert.That(ex!.ParamName, Is.EqualTo("NodeId"));
    }
}

/// <summary>Channels built from a node's configuration.</summary>
public sealed class SignalingChannelsTests
{
    [Test]
    public async Task Nodes_configured_with_the_same_in_process_hub_find_each_other()
    {
        var hub = new InProcessSignalingHub();
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        await using var alice = SignalingChannels.Create(new InProcessSignalingOptions { Hub = hub }, a, ["ovl1"]);
        await using var bob = SignalingChannels.Create(new InProcessSignalingOptions { Hub = hub }, b, ["ovl1"]);
        await alice.ConnectAsync();
        await bob.ConnectAsync();

        await SignalingBehaviourTests.WaitForPeerAsync(alice, "ovl1", b);
        await SignalingBehaviourTests.WaitForPeerAsync(bob, "ovl1", a);
    }

    [Test]
    public async Task Xmpp_configuration_maps_onto_the_xmpp_channel()
    {
        await using var channel = SignalingChannels.Create(new XmppSignalingOptions
        {
            HostAddress = "127.0.0.1", Port = 5222, Username = "node1@overlay.test", Password = "secret",
            PingInterval = TimeSpan.FromSeconds(5), PingTimeout = TimeSpan.FromSeconds(2), ConnectTimeout = TimeSpan.FromSeconds(7),
            ReconnectMinDelay = TimeSpan.FromSeconds(0.5), ReconnectMaxDelay = TimeSpan.FromSeconds(20),
        }, NodeId.NewRandom().ToString(), ["ovl1"]);
        Assert.That(channel, Is.InstanceOf<Overlay.Signaling.Xmpp.XmppSignalingChannel>());
        Assert.That(channel.State, Is.EqualTo(SignalingState.Disconnected));
        var o = ((Overlay.Signaling.Xmpp.XmppSignalingChannel)channel).Options;
        Assert.That((o.Jid, o.Host, o.Port), Is.EqualTo(("node1@overlay.test", "127.0.0.1", (int?)5222)));
        Assert.That(new[] { o.KeepaliveInterval, o.KeepaliveTimeout, o.ConnectTimeout, o.ReconnectMinDelay, o.ReconnectMaxDelay },
            Is.EqualTo(new[] { 5, 2, 7, 0.5, 20 }.Select(TimeSpan.FromSeconds)));
    }
}
