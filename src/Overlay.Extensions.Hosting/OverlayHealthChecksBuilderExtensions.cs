using Microsoft.Extensions.Diagnostics.HealthChecks;
using Overlay.Extensions.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the registered <see cref="Overlay.OverlayNode"/>'s health to the application's health checks.</summary>
public static class OverlayHealthChecksBuilderExtensions
{
    /// <summary>
    /// Reports the node registered by <c>AddOverlayNode</c>: healthy when signaling is connected and every overlay with
    /// other members has a link up; degraded while signaling reconnects with links up, or members are known but no link
    /// is up yet; <paramref name="failureStatus"/> (unhealthy by default) when the node is not running or signaling is
    /// down with no link up.
    /// </summary>
    public static IHealthChecksBuilder AddOverlayNode(this IHealthChecksBuilder builder, string name = "overlay", HealthStatus? failureStatus = null,
        IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddCheck<OverlayNodeHealthCheck>(name, failureStatus, tags ?? []);
    }
}
