using Overlay.Nat.Ice;
using Overlay.Transport;

namespace Overlay.Engine;

/// <summary>
/// How a link finds its way to the peer: local credentials and candidates to signal, the peer's to check, a selected
/// pair, and the datagram channel the TinCan link runs on. <see cref="IcePath"/> is ICE over UDP sockets; tests supply
/// paths over memory so that negotiation runs without sockets or wall-clock waits.
/// </summary>
internal interface ILinkPath : IAsyncDisposable
{
    /// <summary>Controlling or controlled (ICE may swap it on a role conflict).</summary>
    IceRole Role { get; }

    /// <summary>Our current credentials (new after <see cref="Restart"/>).</summary>
    IceCredentials LocalCredentials { get; }

    /// <summary>The candidates gathered so far.</summary>
    IReadOnlyList<IceCandidate> LocalCandidates { get; }

    /// <summary>The selected pair, once there is one.</summary>
    IceSelectedPair? SelectedPair { get; }

    /// <summary>The path to the peer, stable for the path's life (its route may change under it).</summary>
    IDatagramChannel Channel { get; }

    /// <summary>A local candidate was gathered (any thread).</summary>
    event Action<IceCandidate>? CandidateGathered;

    /// <summary>The selected pair was replaced by a better one that succeeded later (any thread).</summary>
    event Action<IceSelectedPair>? SelectedPairChanged;

    /// <summary>Gathers local candidates (again, after a restart); completes when gathering ends.</summary>
    Task GatherAsync(CancellationToken cancellationToken);

    void SetRemoteCredentials(IceCredentials remote);

    void AddRemoteCandidate(IceCandidate candidate);

    /// <summary>Starts (or, after a restart, restarts) connectivity checks.</summary>
    void Start();

    /// <summary>New local credentials and new checks on the same path (RFC 8445 §9).</summary>
    IceCredentials Restart();

    /// <summary>Completes with the selected pair; faults with <see cref="IceFailedException"/> when none works.</summary>
    Task<IceSelectedPair> WaitForSelectedPairAsync(CancellationToken cancellationToken);
}

/// <summary>Creates the path of a new link.</summary>
internal interface ILinkPathFactory
{
    /// <summary>A new path; may throw <see cref="System.Net.Sockets.SocketException"/> or <see cref="InvalidOperationException"/> when no socket can be opened.</summary>
    ILinkPath Create(IceRole role);
}

/// <summary>
/// The real paths: an <see cref="IceAgent"/> per link, its socket on the node's event loop that carries the fewest
/// links (so the links spread over the loops, one per core), or on a loop of its own without a group.
/// </summary>
internal sealed class IcePathFactory(IceOptions options, EventLoopGroup? loops, bool segmentation) : ILinkPathFactory
{
    private readonly Lock _gate = new(); // choose and count at once: two links made together do not pick the same loop

    public ILinkPath Create(IceRole role)
    {
        if (loops is null) return new IcePath(IceAgent.Create(options, role, loop: null, segmentation));
        EventLoop loop;
        lock (_gate)
        {
            loop = loops.LeastLoaded();
            loop.AddLinks(1);
        }
        try
        {
            return new IcePath(IceAgent.Create(options, role, loop, segmentation), new IcePath.Placement(loops, loop, _gate));
        }
        catch
        {
            loop.AddLinks(-1);
            throw;
        }
    }
}

/// <summary>An <see cref="IceAgent"/> as a link's path; counted on its loop's links until <see cref="Retire"/>.</summary>
internal sealed class IcePath(IceAgent agent, IcePath.Placement? placement = null) : ILinkPath
{
    /// <summary>Which of the node's loops serves the path's socket, and the factory's lock that counts them.</summary>
    internal sealed class Placement(EventLoopGroup loops, EventLoop loop, Lock gate)
    {
        public readonly EventLoopGroup Loops = loops;
        public readonly Lock Gate = gate;
        public EventLoop Loop = loop;
        public bool Up, Retired;
    }

    public IceAgent Agent => agent;

    /// <summary>The loop that serves the socket now (null for a socket with a loop of its own).</summary>
    internal EventLoop? Loop => placement?.Loop;

    /// <summary>
    /// The link is up: counted as up on its loop, after moving to the loop with the fewest links up if that has fewer
    /// than the link's own loop without it. The loop was chosen when the link was made, counting attempts that may
    /// never come up; working links are what should be spread. Once only; on the control path, not a loop's thread.
    /// </summary>
    public void OnUp()
    {
        if (placement is not { } p) return;
        lock (p.Gate)
        {
            if (p.Up || p.Retired) return;
            p.Up = true;
            var best = p.Loops.FewestUp();
            if (best != p.Loop && best.LinksUp < p.Loop.LinksUp)
            {
                agent.Endpoint.Mux.MoveTo(best);
                p.Loop.AddLinks(-1);
                best.AddLinks(1);
                p.Loop = best;
            }
            p.Loop.AddLinksUp(1);
        }
    }

    /// <summary>
    /// The link has ended: its loop no longer counts it, so the next link made goes where the live links are fewest,
    /// even while this one's socket is still being closed. Also done by <see cref="DisposeAsync"/>; once only.
    /// </summary>
    public void Retire()
    {
        if (placement is not { } p) return;
        lock (p.Gate)
        {
            if (p.Retired) return;
            p.Retired = true;
            p.Loop.AddLinks(-1);
            if (p.Up) p.Loop.AddLinksUp(-1);
        }
    }

    public IceRole Role => agent.Role;

    public IceCredentials LocalCredentials => agent.LocalCredentials;

    public IReadOnlyList<IceCandidate> LocalCandidates => agent.LocalCandidates;

    public IceSelectedPair? SelectedPair => agent.SelectedPair;

    public IDatagramChannel Channel => agent.Channel;

    public event Action<IceCandidate>? CandidateGathered
    {
        add => agent.CandidateGathered += value;
        remove => agent.CandidateGathered -= value;
    }

    public event Action<IceSelectedPair>? SelectedPairChanged
    {
        add => agent.SelectedPairChanged += value;
        remove => agent.SelectedPairChanged -= value;
    }

    public Task GatherAsync(CancellationToken cancellationToken) => agent.GatherAsync(cancellationToken);

    public void SetRemoteCredentials(IceCredentials remote) => agent.SetRemoteCredentials(remote);

    public void AddRemoteCandidate(IceCandidate candidate) => agent.AddRemoteCandidate(candidate);

    public void Start() => agent.Start();

    public IceCredentials Restart() => agent.Restart();

    public Task<IceSelectedPair> WaitForSelectedPairAsync(CancellationToken cancellationToken) => agent.WaitForSelectedPairAsync(cancellationToken);

    public ValueTask DisposeAsync()
    {
        Retire();
        return agent.DisposeAsync();
    }
}
