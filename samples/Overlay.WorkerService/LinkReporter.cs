using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Overlay.Samples.WorkerService;

/// <summary>Logs the node's ID once it is ready, then every link change and, every 30 s, the node's health.</summary>
internal sealed partial class LinkReporter(OverlayNode node, HealthCheckService health, ILogger<LinkReporter> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var links = Task.Run(async () =>
        {
            await foreach (var e in node.WatchLinksAsync(stoppingToken))
                LogLink(e.OverlayId, e.PeerNodeId, e.Change, e.Path?.ToString() ?? "-", e.Elapsed.TotalMilliseconds);
        }, stoppingToken);
        try
        {
            await node.WaitUntilReadyAsync(stoppingToken);
            LogReady(node.NodeId, string.Join(", ", node.Overlays.Select(o => o.Id)));
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(30));
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var report = await health.CheckHealthAsync(stoppingToken);
                LogHealth(report.Status, report.Entries.TryGetValue("overlay", out var entry) ? entry.Description ?? "" : "");
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
        try { await links; }
        catch (OperationCanceledException) { }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "node {NodeId} ready on {Overlays}")]
    private partial void LogReady(string nodeId, string overlays);

    [LoggerMessage(Level = LogLevel.Information, Message = "overlay {Overlay}: link to {Peer} {Change} over {Path} ({Milliseconds:0} ms)")]
    private partial void LogLink(string overlay, string peer, LinkChange change, string path, double milliseconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "health {Status}: {Description}")]
    private partial void LogHealth(HealthStatus status, string description);
}
