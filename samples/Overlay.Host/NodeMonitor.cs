using System.Reflection;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Overlay.Signaling;

namespace Overlay.Host;

/// <summary>
/// What the host adds to its node: the node itself is registered, started and stopped by the hosting package
/// (<c>AddOverlayNode</c>), as in any application; this service, started after it, remembers the members signaling
/// announces (which the node's status counts but does not list), gives the control socket and the map the status with
/// them, tells the map of changes, and logs the status and writes the status file when asked to.
/// </summary>
public sealed class NodeMonitor : IHostedService, IDisposable
{
    /// <summary>Members remembered per overlay; announcements past it are counted, not kept (they come from the network).</summary>
    internal const int MaxMembers = 4096;

    private readonly OverlayNode _node;
    private readonly RunOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, SortedSet<string>> _members = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private Task _reporter = Task.CompletedTask;
    private DateTimeOffset _started;

    /// <summary>Creates the service around a node that is not started yet (so that it hears every member announced).</summary>
    public NodeMonitor(OverlayNode node, RunOptions options, ILogger<NodeMonitor> logger)
    {
        ArgumentNullException.ThrowIfNull(node);
        _node = node;
        _options = options;
        _logger = logger;
        foreach (var overlay in node.Options.Overlays) _members[overlay.Id] = new SortedSet<string>(StringComparer.Ordinal) { node.NodeId };
        node.PeerChanged += OnPeerChanged;
        node.LinkChanged += OnLinkChanged;
    }

    /// <summary>The host's version (the assembly's informational version).</summary>
    public static string Version { get; } =
        typeof(NodeMonitor).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    /// <summary>The node.</summary>
    public OverlayNode Node => _node;

    /// <summary>Raised on every link change (from the overlay's control thread): the map pushes a new status.</summary>
    public event EventHandler? Changed;

    /// <summary>Members announcements dropped because an overlay already had <see cref="MaxMembers"/>.</summary>
    public long MembersNotKept { get; private set; }

    /// <summary>Starts reporting; the node has started already (hosted services start in the order they were added).</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _started = DateTimeOffset.UtcNow;
        if (_options.StatusInterval > TimeSpan.Zero || _options.StatusFile is not null) _reporter = ReportPeriodicallyAsync(_stopping.Token);
        return Task.CompletedTask;
    }

    /// <summary>Stops reporting, before the node stops (hosted services stop in the reverse order).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _reporter.ConfigureAwait(false);
    }

    /// <summary>The node's status with the members it heard of.</summary>
    public async Task<HostStatus> GetStatusAsync()
    {
        var status = await _node.GetStatusAsync().ConfigureAwait(false);
        var overlays = new List<HostOverlayStatus>(status.Overlays.Count);
        foreach (var overlay in status.Overlays)
        {
            string[] members;
            lock (_gate) members = _members.TryGetValue(overlay.OverlayId, out var set) ? [.. set] : [];
            overlays.Add(new HostOverlayStatus(overlay, members));
        }
        return new HostStatus(status.NodeId, status.Fingerprint, status.Signaling.ToString(), Version, _started, overlays);
    }

    private void OnPeerChanged(object? sender, PeerEvent e)
    {
        lock (_gate)
        {
            if (!_members.TryGetValue(e.OverlayId, out var set)) return;
            switch (e.Change)
            {
                case PeerChange.Joined when set.Count < MaxMembers: set.Add(e.NodeId); break;
                case PeerChange.Joined: if (!set.Contains(e.NodeId)) MembersNotKept++; break;
                case PeerChange.Left or PeerChange.Revoked: set.Remove(e.NodeId); break;
                case PeerChange.SignalingLost: set.RemoveWhere(id => id != _node.NodeId); break;
            }
        }
        Changed?.Invoke(this, EventArgs.Empty);
    }

    private void OnLinkChanged(object? sender, LinkEvent e) => Changed?.Invoke(this, EventArgs.Empty);

    private async Task ReportPeriodicallyAsync(CancellationToken cancellationToken)
    {
        var every = _options.StatusInterval > TimeSpan.Zero ? _options.StatusInterval : TimeSpan.FromSeconds(1);
        using var timer = new PeriodicTimer(every);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                if (_options.StatusInterval > TimeSpan.Zero) _logger.LogInformation("status:\n{Status}", (await GetStatusAsync().ConfigureAwait(false)).Describe());
                if (_options.StatusFile is { } file)
                {
                    var status = await _node.GetStatusAsync().ConfigureAwait(false);
                    await StatusFile.WriteAsync(file, JsonSerializer.Serialize(status, HostJson.Indented.OverlayNodeStatus), cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _node.PeerChanged -= OnPeerChanged;
        _node.LinkChanged -= OnLinkChanged;
        _stopping.Dispose();
    }
}
