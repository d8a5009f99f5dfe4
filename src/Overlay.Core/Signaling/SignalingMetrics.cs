using System.Diagnostics.Metrics;

namespace Overlay.Signaling;

/// <summary>System.Diagnostics.Metrics instruments of the signaling layer (meter <c>Overlay.Signaling</c>).</summary>
internal static class SignalingMetrics
{
    public static readonly Meter Meter = new("Overlay.Signaling");

    /// <summary>Inbound messages dropped, tagged with <c>reason</c>.</summary>
    public static readonly Counter<long> Dropped = Meter.CreateCounter<long>("overlay.signaling.dropped", "{message}", "Inbound signaling messages dropped");

    /// <summary>Inbound messages accepted (requests, notifications, matched responses).</summary>
    public static readonly Counter<long> Accepted = Meter.CreateCounter<long>("overlay.signaling.accepted", "{message}", "Inbound signaling messages accepted");

    /// <summary>Reconnections after a lost connection.</summary>
    public static readonly Counter<long> Reconnects = Meter.CreateCounter<long>("overlay.signaling.reconnects", "{reconnect}", "Signaling reconnections");
}
