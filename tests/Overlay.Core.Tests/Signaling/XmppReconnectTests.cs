using System.Diagnostics;
using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.Xmpp;
using Overlay.Switching;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Signaling;

/// <summary>A prosody restart: both nodes notice, reconnect with backoff, announce again and rediscover each other.</summary>
[TestFixture]
[NonParallelizable]
public sealed class XmppReconnectTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Test]
    public async Task After_a_prosody_restart_both_nodes_reconnect_and_rediscover_each_other()
    {
        await using var server = await ProsodyServer.StartAsync();
        string a = NodeId.NewRandom().ToString(), b = NodeId.NewRandom().ToString();
        await using var alice = new XmppSignalingChannel(XmppSignalingTests.Options(server, "node1", a, ["ovl1"]));
        await using var bob = new XmppSignalingChannel(XmppSignalingTests.Options(server, "node2", b, ["ovl1"]));
        await alice.ConnectAsync();
        await bob.ConnectAsync();
        await SignalingBehaviourTests.WaitForPeerAsync(alice, "ovl1", b);
        await SignalingBehaviourTests.WaitForPeerAsync(bob, "ovl1", a);

        var clock = new Stopwatch();
        var aliceLost = WaitForStateAsync(alice, SignalingState.Reconnecting, clock);
        var bobLost = WaitForStateAsync(bob, SignalingState.Reconnecting, clock);

        clock.Start();
        await server.StopAsync();
        var stopped = clock.Elapsed;
        var (lossError, detected) = await aliceLost;
        await bobLost;
        Assert.That(alice.GetPeers("ovl1"), Is.Empty, "the peer table is cleared while signaling is lost");
        Assert.That(bob.GetPeers("ovl1"), Is.Empty, "the peer table is cleared while signaling is lost");
        var aliceSees = SignalingBehaviourTests.WaitForPeerAsync(alice, "ovl1", b);
        var bobSees = SignalingBehaviourTests.WaitForPeerAsync(bob, "ovl1", a);

        await server.StartAgainAsync();
        var serverUp = clock.Elapsed;
        await Task.WhenAll(aliceSees, bobSees);
        var rediscovered = clock.Elapsed;

        Assert.Multiple(() =>
        {
            Assert.That(alice.State, Is.EqualTo(SignalingState.Connected));
            Assert.That(bob.State, Is.EqualTo(SignalingState.Connected));
            Assert.That(alice.Reconnections, Is.EqualTo(1));
            Assert.That(alice.GetPeers("ovl1")[b], Is.EqualTo(bob.LocalAddress));
            Assert.That(bob.GetPeers("ovl1")[a], Is.EqualTo(alice.LocalAddress));
        });
        // A node's instruments read the same (README "Metrics and traces": overlay.signaling.reconnects and .state).
        using (new NodeTelemetry(a, meterFactory: null, () => [], () => alice))
        {
            var observed = Node.NodeTelemetryTests.Observe(a);
            Assert.That(observed.Where(m => m.Name == "overlay.signaling.reconnects").Select(m => m.Value), Is.EqualTo(new[] { 1.0 }));
            Assert.That(observed.Where(m => m.Name == "overlay.signaling.state" && Equals(m.Tags["overlay.signaling.state"], "connected")).Select(m => m.Value),
                Is.EqualTo(new[] { 1.0 }));
        }
        TestContext.Out.WriteLine($"loss reported as: {lossError?.Message}");
        Assert.That(lossError, Is.InstanceOf<XmppStreamErrorException>(), "prosody closes streams with a stream error on SIGTERM");
        Assert.That(((XmppStreamErrorException)lossError!).Condition, Is.EqualTo("system-shutdown"));
        TestContext.Out.WriteLine(
            $"prosody restart: loss detected after {detected.TotalMilliseconds:0} ms; prosody stopped after {stopped.TotalMilliseconds:0} ms; accepting again after {serverUp.TotalMilliseconds:0} ms; " +
            $"both nodes reconnected and rediscovered each other after {rediscovered.TotalMilliseconds:0} ms " +
            $"({(rediscovered - serverUp).TotalMilliseconds:0} ms after prosody was back; backoff 100 ms..1 s with jitter)");

        // The rediscovered peers can negotiate again.
        using var cts = new CancellationTokenSource(Wait);
        var answering = Task.Run(async () =>
        {
            await foreach (var incoming in bob.ReadIncomingAsync(cts.Token))
            {
                await incoming.RespondAsync(new EdgeResponse("ovl1", true, ""), cts.Token);
                return;
            }
        });
        Assert.That(await alice.RequestAsync(b, new EdgeRequest("ovl1", "successor")), Is.EqualTo(new EdgeResponse("ovl1", true, "")));
        await answering;
    }

    private static Task<(Exception? Error, TimeSpan At)> WaitForStateAsync(ISignalingChannel channel, SignalingState state, Stopwatch clock)
    {
        var tcs = new TaskCompletionSource<(Exception?, TimeSpan)>(TaskCreationOptions.RunContinuationsAsynchronously);
        channel.StateChanged += (_, e) =>
        {
            if (e.State == state) tcs.TrySetResult((e.Error, clock.Elapsed));
        };
        return tcs.Task.WaitAsync(Wait);
    }
}
