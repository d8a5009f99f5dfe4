using Microsoft.Extensions.Logging;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;

namespace Overlay.Engine;

/// <summary>What every overlay of a node shares: identity, signaling, ICE settings, timings, clock and logging.</summary>
internal sealed class NodeContext
{
    public required string NodeId { get; init; }
    public required UInt128 Self { get; init; }
    public required NodeIdentity Identity { get; init; }
    public required ISignalingChannel Signaling { get; init; }
    public required IceOptions Ice { get; init; }
    public required LinkTimings Timings { get; init; }
    public required TimeProvider Time { get; init; }
    public required ILoggerFactory LoggerFactory { get; init; }
    public required Action<LinkEvent> RaiseLink { get; init; }
    public required DataPathOptions DataPath { get; init; }

    /// <summary>The node's instruments and link-setup spans; null in tests that run engines alone.</summary>
    public NodeTelemetry? Telemetry { get; init; }

    /// <summary>The node's data-path threads: loop i serves queue i of each TAP and the sockets of the links given to it.</summary>
    public required Transport.EventLoopGroup Loops { get; init; }

    /// <summary>Creates each link's path; ICE over UDP sockets (each link's on the least busy of <see cref="Loops"/>) unless a test supplies its own.</summary>
    public ILinkPathFactory Paths
    {
        get => _paths ??= new IcePathFactory(Ice, Loops, DataPath.UdpSegmentationOffload);
        init => _paths = value;
    }

    private ILinkPathFactory? _paths;

    /// <summary>The fingerprint as it travels in offers and answers.</summary>
    public string FingerprintText => "sha-256 " + Identity.Fingerprint;
}
