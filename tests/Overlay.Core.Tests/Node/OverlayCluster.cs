using NUnit.Framework;
using System.Net;
using Overlay.Signaling.InProcess;
using Overlay.Tap.InMemory;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Several <see cref="OverlayNode"/>s in one process: an in-process signaling hub of their own, in-memory NICs
/// with an in-memory IP host behind each, and real links (ICE host candidates, DTLS, AES-GCM) on this machine.
/// </summary>
internal sealed class OverlayCluster : IAsyncDisposable
{
    public const string OverlayId = "test";
    private readonly LinkTimings _timings;

    /// <summary>The in-process signaling hub the nodes meet in (other members may join it).</summary>
    public InProcessSignalingHub Hub { get; } = new();

    public OverlayCluster(LinkTimings? timings = null)
    {
        _timings = timings ?? new LinkTimings();
    }

    public List<OverlayNode> Nodes { get; } = [];

    public List<InMemoryIpHost> Hosts { get; } = [];

    public List<LinkEvent> Events { get; } = [];

    private readonly Lock _gate = new();
    private readonly List<(Func<bool> Condition, TaskCompletionSource Done)> _waiters = [];

    /// <summary>Adds and starts a node with address 10.20.0.(index+1).</summary>
    public async Task<OverlayNode> AddAsync(Action<OverlayBuilder>? configure = null, Action<OverlayNodeBuilder>? configureNode = null)
    {
        var index = Nodes.Count;
        var builder = OverlayNode.Create()
            .UseInProcessSignaling(Hub)
            .WithLinkTimings(_timings)
            .JoinOverlay(OverlayId, o =>
            {
                o.WithInMemoryDevice().WithAddress($"10.20.0.{index + 1}/24");
                configure?.Invoke(o);
            });
        configureNode?.Invoke(builder);
        var node = builder.Build(new MemoryLoggerProvider($"n{index}"));
        node.LinkChanged += (_, e) =>
        {
            lock (_gate)
            {
                Events.Add(e);
                foreach (var waiter in _waiters.ToArray())
                    if (waiter.Condition())
                    {
                        _waiters.Remove(waiter);
                        waiter.Done.TrySetResult();
                    }
            }
        };
        await node.StartAsync();
        Nodes.Add(node);
        var device = (InMemoryEthernetDevice)node.GetOverlay(OverlayId).Device;
        Hosts.Add(new InMemoryIpHost(device, IPAddress.Parse($"10.20.0.{index + 1}")));
        return node;
    }

    /// <summary>Completes when <paramref name="condition"/> holds, re-evaluated on every link event (and once now).</summary>
    public async Task WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            // Listen before looking, so that an event between the look and the wait is not missed.
            var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_gate) _waiters.Add((() => true, changed));
            if (await condition()) return;
            try
            {
                await changed.Task.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds} s waiting for {what}\n{await DescribeAsync()}");
            }
        }
    }

    /// <summary>True when every live node has at least <paramref name="perNode"/> links up and every up link is up at both ends.</summary>
    public async Task<bool> RingFormedAsync(int perNode)
    {
        var up = new Dictionary<string, HashSet<string>>();
        foreach (var node in Nodes)
        {
            var status = await node.GetStatusAsync();
            up[node.NodeId] = [.. status.Overlays[0].Links.Where(l => l.State == LinkChange.Up).Select(l => l.PeerNodeId)];
        }
        // Each node's ring successor must be linked: the ring is what keeps the overlay connected.
        var ring = up.Keys.Order(StringComparer.Ordinal).ToArray();
        for (var i = 0; i < ring.Length && ring.Length > 1; i++)
            if (!up[ring[i]].Contains(ring[(i + 1) % ring.Length])) return false;
        return up.All(n => n.Value.Count >= perNode && n.Value.All(p => up.TryGetValue(p, out var back) && back.Contains(n.Key)));
    }

    /// <summary>Every node's links and switch counters, for failure messages.</summary>
    public async Task<string> DescribeAsync()
    {
        var text = new System.Text.StringBuilder();
        foreach (var node in Nodes)
        {
            var overlay = (await node.GetStatusAsync()).Overlays[0];
            var c = node.GetOverlay(OverlayId).Switch.Counters;
            text.AppendLine($"node {node.NodeId[..8]} switch ports: {string.Join(' ', node.GetOverlay(OverlayId).Switch.Neighbours.Select(n => n.ToString()[..8]))}");
            text.AppendLine($"node {node.NodeId[..8]} members {overlay.Members} switch: localIn {c.LocalIn} linkIn {c.LinkIn} floodIn {c.FloodIn} delivered {c.DeliveredLocal} " +
                $"unicastFwd {c.UnicastForwarded} floodCopies {c.FloodCopiesSent} outsideArc {c.OutsideArc} dup {c.Duplicates} unknownPort {c.UnknownPort} sendFailed {c.SendFailed} loops {c.Loops}");
            foreach (var l in overlay.Links)
                text.AppendLine($"   -> {l.PeerNodeId[..8]} {l.State} id {l.LinkId[..6]} init {l.Initiator} roles {l.Roles} {l.Path} sent {l.Statistics?.FramesSent} recv {l.Statistics?.FramesReceived} " +
                    $"forged {l.Statistics?.DroppedForged} sendFail {l.Statistics?.SendFailures}");
        }
        text.AppendLine(string.Join('\n', MemoryLoggerProvider.Lines));
        return text.ToString();
    }

    /// <summary>Pings every pair of hosts; on a timeout, fails with every node's links and counters.</summary>
    public async Task PingAllPairsAsync()
    {
        foreach (var from in Hosts)
            foreach (var to in Hosts)
            {
                if (from == to) continue;
                try
                {
                    await from.PingAsync(to.Address, TimeSpan.FromSeconds(5));
                }
                catch (TimeoutException)
                {
                    Assert.Fail($"ping {from.Address} -> {to.Address} timed out\n{await DescribeAsync()}");
                }
            }
    }

    /// <summary>Waits until every host but the first has received a broadcast probe (the hosts raise no event: polled).</summary>
    public async Task WaitForProbesAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Hosts.Skip(1).Any(h => h.ProbesReceived.Count == 0))
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"the broadcast did not reach every host within {timeout.TotalSeconds} s\n{await DescribeAsync()}");
            await Task.Delay(20);
        }
    }

    public async Task RemoveAsync(int index)
    {
        await Hosts[index].DisposeAsync();
        await Nodes[index].DisposeAsync();
        Hosts.RemoveAt(index);
        Nodes.RemoveAt(index);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in Hosts) await host.DisposeAsync();
        foreach (var node in Nodes) await node.DisposeAsync();
    }
}
