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

/// <summary>The real paths: an <see cref="IceAgent"/> per link, its sockets on the node's event loop when there is one.</summary>
internal sealed class IcePathFactory(IceOptions options, EventLoop? loop, bool segmentation) : ILinkPathFactory
{
    public ILinkPath Create(IceRole role) => new IcePath(IceAgent.Create(options, role, loop, segmentation));
}

/// <summary>An <see cref="IceAgent"/> as a link's path.</summary>
internal sealed class IcePath(IceAgent agent) : ILinkPath
{
    public IceAgent Agent => agent;

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

    public ValueTask DisposeAsync() => agent.DisposeAsync();
}
