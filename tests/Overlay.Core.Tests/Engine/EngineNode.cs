using System.Net.NetworkInformation;
using Overlay.Core.Tests.Nat;
using Overlay.Core.Tests.Node;
using Overlay.Engine;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Signaling.InProcess;
using Overlay.Tap.InMemory;

namespace Overlay.Core.Tests.Engine;

/// <summary>
/// One overlay engine as a node runs it, without sockets or wall-clock waits: in-process signaling, paths over memory,
/// an in-memory NIC and a clock the test moves. Link events are recorded and can be awaited.
/// </summary>
internal sealed class EngineNode : IAsyncDisposable
{
    public const string OverlayId = "eng";
    private readonly Lock _gate = new();
    private readonly List<LinkEvent> _events = [];
    private readonly List<(Func<LinkEvent, bool> Match, TaskCompletionSource<LinkEvent> Done)> _waiters = [];
    private readonly CancellationTokenSource _lifetime = new();
    private readonly NodeIdentity _identity;
    private Task? _reader;
    private bool _engineStopped;

    private EngineNode(string nodeId, SignalingChannelBase signaling, NodeIdentity identity)
    {
        NodeId = nodeId;
        Signaling = signaling;
        _identity = identity;
    }

    private readonly Overlay.Transport.EventLoopGroup _loops = Overlay.Transport.EventLoopGroup.Start("engine test");

    public string NodeId { get; }

    public SignalingChannelBase Signaling { get; }

    public OverlayEngine Engine { get; private set; } = null!;

    public IReadOnlyList<LinkEvent> Events
    {
        get { lock (_gate) return [.. _events]; }
    }

    /// <summary>Creates the node and connects its signaling (presence goes out); the engine starts with <see cref="Start"/>.</summary>
    public static async Task<EngineNode> ConnectAsync(InProcessSignalingHub hub, string nodeId, ManualTimeProvider time, MemoryPathNetwork paths, LinkTimings? timings = null, NodeIdentity? identity = null)
    {
        var loggers = new MemoryLoggerProvider(nodeId[..4]);
        var signaling = SignalingChannels.Create(new InProcessSignalingOptions { Hub = hub }, nodeId, [OverlayId], loggers, time);
        await signaling.ConnectAsync();
        identity ??= NodeIdentity.CreateEphemeral();
        var node = new EngineNode(nodeId, signaling, identity);
        var context = new NodeContext
        {
            NodeId = nodeId, Self = Switching.NodeId.Parse(nodeId).Value, Identity = identity, Signaling = signaling, Ice = new IceOptions(),
            Timings = timings ?? new LinkTimings(), Time = time, LoggerFactory = loggers, RaiseLink = node.OnLink, Paths = paths.Factory(),
            Loops = node._loops, DataPath = new DataPathOptions(), // the loop idles: memory paths and an in-memory NIC need none
        };
        var device = new InMemoryEthernetDevice("mem-" + nodeId[..4], OverlayEngine.DeriveMac(nodeId, OverlayId));
        node.Engine = new OverlayEngine(context, new OverlayOptions { Id = OverlayId }, device);
        return node;
    }

    /// <summary>Starts the engine on the members signaling knows and feeds it presence and signals, as a node does.</summary>
    public void Start()
    {
        Signaling.PeerChanged += OnPeerChanged;
        _reader = Task.Run(async () =>
        {
            try
            {
                await foreach (var signal in Signaling.ReadIncomingAsync(_lifetime.Token)) Engine.OnSignal(signal);
            }
            catch (OperationCanceledException)
            {
                // disposed
            }
        });
        Engine.Start(Signaling.GetPeers(OverlayId).Keys);
    }

    private void OnPeerChanged(object? sender, PeerEvent e)
    {
        if (e.OverlayId == OverlayId) Engine.OnPeerEvent(e);
    }

    private void OnLink(LinkEvent e)
    {
        lock (_gate)
        {
            _events.Add(e);
            foreach (var waiter in _waiters.ToArray())
                if (waiter.Match(e))
                {
                    _waiters.Remove(waiter);
                    waiter.Done.TrySetResult(e);
                }
        }
    }

    /// <summary>The first link event, past or future, that matches (bounded in real time only to fail rather than hang).</summary>
    public Task<LinkEvent> WaitForAsync(Func<LinkEvent, bool> match, string what)
    {
        lock (_gate)
        {
            if (_events.FirstOrDefault(match) is { } seen) return Task.FromResult(seen);
            var done = new TaskCompletionSource<LinkEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((match, done));
            return done.Task.WaitAsync(TimeSpan.FromSeconds(20)).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result
                : throw new TimeoutException($"{NodeId[..4]}: no link event for {what}; saw: {string.Join("; ", Events.Select(e => $"{e.PeerNodeId[..4]} {e.LinkId[..6]} {e.Change} {e.Reason}"))}"),
                TaskScheduler.Default);
        }
    }

    public async Task<LinkStatus[]> LinksAsync() => [.. (await Engine.GetStatusAsync()).Links];

    /// <summary>Disposes the engine alone (its links are torn down, the peers told); signaling stays.</summary>
    public async Task StopEngineAsync()
    {
        _engineStopped = true;
        await Engine.DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_engineStopped) await Engine.DisposeAsync();
        await _lifetime.CancelAsync();
        if (_reader is not null) await _reader;
        Signaling.PeerChanged -= OnPeerChanged;
        await Signaling.DisposeAsync();
        _loops.Dispose();
        _lifetime.Dispose();
        _identity.Dispose();
    }
}
