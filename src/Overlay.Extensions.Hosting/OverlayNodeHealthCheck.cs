using Microsoft.Extensions.Diagnostics.HealthChecks;
using Overlay.Signaling;

namespace Overlay.Extensions.Hosting;

/// <summary>
/// The node's health from its signaling state and its links. Healthy: signaling connected, and every overlay with other
/// members has a link up. Degraded: signaling reconnecting while links are up (presence is advisory: working links go
/// on), or members known but no link up yet. Otherwise the registration's failure status: not started, stopped, or
/// signaling down with no link up.
/// </summary>
internal sealed class OverlayNodeHealthCheck(OverlayNode node) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var failure = context.Registration.FailureStatus;
        var signaling = node.SignalingState;
        if (node.Overlays.Count == 0 || signaling == SignalingState.Closed)
            return new HealthCheckResult(failure, $"the node is not running (signaling {signaling})");
        var status = await node.GetStatusAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
        var data = new Dictionary<string, object> { ["signaling"] = signaling.ToString() };
        var linksUp = 0;
        var unlinked = new List<string>();
        foreach (var overlay in status.Overlays)
        {
            var up = overlay.Links.Count(l => l.State == LinkChange.Up);
            linksUp += up;
            data[$"{overlay.OverlayId}.members"] = overlay.Members;
            data[$"{overlay.OverlayId}.links_up"] = up;
            if (up == 0 && overlay.Members > 1) unlinked.Add(overlay.OverlayId);
        }
        return signaling switch
        {
            SignalingState.Connected when unlinked.Count == 0 => HealthCheckResult.Healthy($"signaling connected, {linksUp} link(s) up", data),
            SignalingState.Connected => HealthCheckResult.Degraded($"members but no link up yet on {string.Join(", ", unlinked)}", data: data),
            SignalingState.Connecting or SignalingState.Reconnecting when linksUp > 0 =>
                HealthCheckResult.Degraded($"signaling {signaling}; {linksUp} link(s) still up", data: data),
            _ => new HealthCheckResult(failure, $"signaling {signaling} and no link up", data: data),
        };
    }
}
