using System.Net;
using Overlay.Engine;
using Overlay.Nat.Ice;
using Overlay.Transport;

namespace Overlay.Core.Tests.Engine;

/// <summary>
/// Link paths over memory for several nodes: two paths find each other when each has started checks with the other's
/// credentials, as ICE pairs two agents; then their channels carry datagrams synchronously. A test can cut every
/// path (a NAT dropped its mappings) or make paths never meet (nothing reachable).
/// </summary>
internal sealed class MemoryPathNetwork
{
    private readonly Lock _gate = new();
    private readonly List<MemoryPath> _paths = [];
    private readonly List<(int Count, TaskCompletionSource Done)> _pairingWaiters = [];
    private readonly List<(int Count, TaskCompletionSource Done)> _startWaiters = [];
    private int _pairings, _starts;

    /// <summary>While true, no two paths find each other.</summary>
    public bool Unreachable { get; set; }

    public IReadOnlyList<MemoryPath> Paths
    {
        get { lock (_gate) return [.. _paths]; }
    }

    /// <summary>Pairs of paths that found each other so far.</summary>
    public int Pairings
    {
        get { lock (_gate) return _pairings; }
    }

    /// <summary>A node's factory: its paths meet the paths of every other node of this network.</summary>
    public ILinkPathFactory Factory() => new PathFactory(this);

    /// <summary>Every path stops carrying datagrams until ICE pairs it again.</summary>
    public void CutAll()
    {
        foreach (var path in Paths) path.Channel.Blocked = true;
    }

    internal void TryConnect(MemoryPath path)
    {
        MemoryPath? peer;
        lock (_gate)
        {
            _starts++;
            Release(_startWaiters, _starts);
            if (Unreachable) return;
            peer = _paths.FirstOrDefault(p => p != path && p.IsChecking && p.LocalCredentials == path.RemoteCredentials && p.RemoteCredentials == path.LocalCredentials);
        }
        if (peer is null) return;
        path.ConnectTo(peer);
        peer.ConnectTo(path);
        lock (_gate)
        {
            _pairings++;
            Release(_pairingWaiters, _pairings);
        }
    }

    private static void Release(List<(int Count, TaskCompletionSource Done)> waiters, int reached)
    {
        foreach (var waiter in waiters.Where(w => w.Count <= reached).ToArray())
        {
            waiters.Remove(waiter);
            waiter.Done.TrySetResult();
        }
    }

    /// <summary>Completes once <paramref name="count"/> pairs of paths have found each other in all.</summary>
    public Task WaitForPairingsAsync(int count) => WaitAsync(_pairingWaiters, count, () => _pairings);

    /// <summary>Completes once paths have started their checks <paramref name="count"/> times in all (both ends of a negotiation are past offer and answer).</summary>
    public Task WaitForStartsAsync(int count) => WaitAsync(_startWaiters, count, () => _starts);

    private Task WaitAsync(List<(int Count, TaskCompletionSource Done)> waiters, int count, Func<int> reached)
    {
        lock (_gate)
        {
            if (reached() >= count) return Task.CompletedTask;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            waiters.Add((count, done));
            return done.Task.WaitAsync(TimeSpan.FromSeconds(20));
        }
    }

    private sealed class PathFactory(MemoryPathNetwork network) : ILinkPathFactory
    {
        public ILinkPath Create(IceRole role)
        {
            lock (network._gate)
            {
                var path = new MemoryPath(network, role, network._paths.Count + 1);
                network._paths.Add(path);
                return path;
            }
        }
    }
}

/// <summary>One link's path over memory.</summary>
internal sealed class MemoryPath(MemoryPathNetwork network, IceRole role, int index) : ILinkPath
{
    private readonly Lock _gate = new();
    private readonly List<IceCandidate> _local = [Candidate(index, 0, IceCandidateType.Host)];
    private TaskCompletionSource<IceSelectedPair> _selected = NewSelection();
    private IceCredentials _credentials = IceCredentials.NewRandom();
    private IceCredentials? _remote;
    private bool _checking;
    private int _gathered;

    public IceRole Role => role;

    public IceCredentials LocalCredentials
    {
        get { lock (_gate) return _credentials; }
    }

    public IceCredentials? RemoteCredentials
    {
        get { lock (_gate) return _remote; }
    }

    /// <summary>Checks started with the current credentials and not disposed.</summary>
    public bool IsChecking
    {
        get { lock (_gate) return _checking; }
    }

    public bool IsDisposed { get; private set; }

    public int Restarts { get; private set; }

    public List<IceCandidate> RemoteCandidates { get; } = [];

    public IReadOnlyList<IceCandidate> LocalCandidates
    {
        get { lock (_gate) return [.. _local]; }
    }

    public IceSelectedPair? SelectedPair
    {
        get
        {
            lock (_gate) return _selected.Task.IsCompletedSuccessfully ? _selected.Task.Result : null;
        }
    }

    public MemoryPathChannel Channel { get; } = new();

    IDatagramChannel ILinkPath.Channel => Channel;

    public event Action<IceCandidate>? CandidateGathered;

    public event Action<IceSelectedPair>? SelectedPairChanged
    {
        add { }
        remove { }
    }

    /// <summary>Each gathering finds one more (server-reflexive) candidate, announced as ICE announces it.</summary>
    public Task GatherAsync(CancellationToken cancellationToken)
    {
        IceCandidate found;
        lock (_gate)
        {
            found = Candidate(index, ++_gathered, IceCandidateType.ServerReflexive);
            _local.Add(found);
        }
        CandidateGathered?.Invoke(found);
        return Task.CompletedTask;
    }

    public void SetRemoteCredentials(IceCredentials remote)
    {
        lock (_gate) _remote = remote;
    }

    public void AddRemoteCandidate(IceCandidate candidate)
    {
        lock (RemoteCandidates) RemoteCandidates.Add(candidate);
    }

    public void Start()
    {
        lock (_gate) _checking = !IsDisposed;
        network.TryConnect(this);
    }

    public IceCredentials Restart()
    {
        lock (_gate)
        {
            Restarts++;
            _checking = false;
            _credentials = IceCredentials.NewRandom();
            if (_selected.Task.IsCompleted) _selected = NewSelection();
            return _credentials;
        }
    }

    public Task<IceSelectedPair> WaitForSelectedPairAsync(CancellationToken cancellationToken)
    {
        lock (_gate) return _selected.Task.WaitAsync(cancellationToken);
    }

    internal void ConnectTo(MemoryPath peer)
    {
        Channel.Connect(peer.Channel);
        lock (_gate) _selected.TrySetResult(new IceSelectedPair(_local[0], peer._local[0], null));
    }

    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            IsDisposed = true;
            _checking = false;
        }
        Channel.Blocked = true;
        return ValueTask.CompletedTask;
    }

    private static TaskCompletionSource<IceSelectedPair> NewSelection() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static IceCandidate Candidate(int path, int gathered, IceCandidateType type) =>
        new($"{path}x{gathered}", IceCandidate.ComputePriority(type, 65535), new IPEndPoint(IPAddress.Parse($"192.0.2.{path % 250 + 1}"), 40000 + gathered), type);
}

/// <summary>
/// A path's datagram channel: delivers synchronously to the peer's receiver once paired; a datagram arriving before the
/// peer set a receiver waits for it (a DTLS hello must not be lost to a race the test did not mean to run).
/// </summary>
internal sealed class MemoryPathChannel : IDatagramChannel
{
    private readonly Lock _gate = new();
    private readonly Queue<byte[]> _early = new();
    private MemoryPathChannel? _peer;
    private IDatagramReceiver? _receiver;

    /// <summary>While true, datagrams vanish, like a path whose NAT mapping is gone.</summary>
    public volatile bool Blocked;

    public int Headroom => 0;

    public bool TrySend(Span<byte> buffer, int payloadLength, DataPathBatch? batch = null)
    {
        var peer = Volatile.Read(ref _peer);
        if (peer is null || Blocked) return true;
        peer.Deliver(buffer.Slice(Headroom, payloadLength), batch);
        return true;
    }

    public void SetReceiver(IDatagramReceiver? receiver)
    {
        byte[][] early;
        lock (_gate)
        {
            _receiver = receiver;
            if (receiver is null) return;
            early = [.. _early];
            _early.Clear();
        }
        foreach (var datagram in early) receiver.OnDatagram(datagram, null);
    }

    internal void Connect(MemoryPathChannel peer)
    {
        Volatile.Write(ref _peer, peer);
        Blocked = false;
    }

    private void Deliver(ReadOnlySpan<byte> datagram, DataPathBatch? batch)
    {
        IDatagramReceiver? receiver;
        lock (_gate)
        {
            receiver = _receiver;
            if (receiver is null)
            {
                _early.Enqueue(datagram.ToArray());
                return;
            }
        }
        receiver.OnDatagram(datagram, batch);
    }
}
