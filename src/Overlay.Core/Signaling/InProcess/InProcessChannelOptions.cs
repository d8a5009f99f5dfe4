using Microsoft.Extensions.Logging;

namespace Overlay.Signaling.InProcess;

/// <summary>Settings of one in-process signaling channel.</summary>
internal sealed record InProcessChannelOptions
{
    /// <summary>The account name (stands for the XMPP account; roster groups hold account names).</summary>
    public required string Account { get; init; }

    /// <summary>This node's ID (32 lower-case hex characters).</summary>
    public required string NodeId { get; init; }

    /// <summary>The overlays this node serves.</summary>
    public required IReadOnlyList<string> Overlays { get; init; }

    /// <summary>
    /// The roster groups whose contacts are members of each overlay (by overlay ID). An overlay without an entry, or with
    /// none named, takes every roster contact.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> OverlayGroups { get; init; } = new Dictionary<string, IReadOnlyList<string>>();

    /// <summary>How long a request waits for its response unless the call says otherwise.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Clock for timeouts.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Logger factory (none: no logging).</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    internal void Validate()
    {
        if (string.IsNullOrEmpty(Account) || Account.Contains('/', StringComparison.Ordinal))
            throw new ArgumentException("Account must be non-empty and contain no '/'", nameof(Account));
        if (!Switching.NodeId.IsValid(NodeId)) throw new ArgumentException($"NodeId must be 32 lower-case hex characters, got '{NodeId}'", nameof(NodeId));
        if (Overlays is null || Overlays.Count == 0) throw new ArgumentException("Overlays must name at least one overlay", nameof(Overlays));
        if (RequestTimeout <= TimeSpan.Zero) throw new ArgumentException("RequestTimeout must be positive", nameof(RequestTimeout));
    }
}
