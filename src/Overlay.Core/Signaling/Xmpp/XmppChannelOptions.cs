using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace Overlay.Signaling.Xmpp;

/// <summary>Settings of an XMPP signaling channel. Validated once when the channel is created.</summary>
internal sealed record XmppChannelOptions
{
    /// <summary>The node's account as a bare JID, e.g. <c>node1@overlay.test</c>.</summary>
    public required string Jid { get; init; }

    /// <summary>The account password (SCRAM or PLAIN). May be null with a <see cref="ClientCertificate"/> (SASL EXTERNAL).</summary>
    public string? Password { get; init; }

    /// <summary>This node's ID (32 lower-case hex characters).</summary>
    public required string NodeId { get; init; }

    /// <summary>The overlays this node serves.</summary>
    public required IReadOnlyList<string> Overlays { get; init; }

    /// <summary>
    /// The roster groups whose contacts are members of each overlay (by overlay ID). An overlay without an entry, or with
    /// none named, takes every roster contact.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> OverlayGroups { get; init; } = new Dictionary<string, IReadOnlyList<string>>();

    /// <summary>Server host name or address; null means the JID's domain.</summary>
    public string? Host { get; init; }

    /// <summary>
    /// Server port. When null, the <c>_xmpp-client._tcp</c> SRV records of <see cref="Host"/> (or the domain)
    /// are looked up and tried in order (RFC 6120 §3.2.1), falling back to the host on 5222 (§3.2.2).
    /// </summary>
    public int? Port { get; init; }

    /// <summary>
    /// Creates the TCP socket for each connection attempt (for example inside a network namespace, or bound
    /// to a device); null means a new dual-mode stream socket.
    /// </summary>
    public Func<System.Net.Sockets.Socket>? SocketFactory { get; init; }

    /// <summary>DNS server for the SRV lookup; null means the first nameserver of /etc/resolv.conf.</summary>
    public System.Net.IPEndPoint? DnsServer { get; init; }

    /// <summary>Resource to bind; null asks for <c>overlay-</c> plus random characters.</summary>
    public string? Resource { get; init; }

    /// <summary>
    /// A PEM file with the CA certificate(s) the server's certificate must chain to (instead of the system
    /// store). The host name is still checked.
    /// </summary>
    public string? TrustedCaCertificatePath { get; init; }

    /// <summary>
    /// SHA-256 of the server certificate (DER), hex, colons optional. When set, exactly this certificate is
    /// accepted, whatever its chain.
    /// </summary>
    public string? PinnedCertificateSha256 { get; init; }

    /// <summary>Client certificate for TLS client authentication and SASL EXTERNAL.</summary>
    public X509Certificate2? ClientCertificate { get; init; }

    /// <summary>
    /// SASL mechanisms the client may use, in order of preference. Supported: <c>EXTERNAL</c> (needs a
    /// <see cref="ClientCertificate"/>), <c>SCRAM-SHA-256</c>, <c>SCRAM-SHA-1</c>, <c>PLAIN</c> (only ever inside TLS).
    /// </summary>
    public IReadOnlyList<string> SaslMechanisms { get; init; } = ["EXTERNAL", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"];

    /// <summary>Interval between XEP-0199 pings to the server.</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a ping (and any IQ) may take before the connection is considered lost.</summary>
    public TimeSpan KeepaliveTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Timeout for TCP connect plus the whole stream negotiation.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>First reconnection delay; doubles per failed attempt, with jitter.</summary>
    public TimeSpan ReconnectMinDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest reconnection delay.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Largest stanza accepted from the server; a larger one closes the connection.</summary>
    public int MaxStanzaBytes { get; init; } = 64 * 1024;

    /// <summary>How long a request waits for its response unless the call says otherwise.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Clock for timeouts, keepalives and backoff.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Logger factory (none: no logging).</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    internal string LocalPart => Jid[..Jid.IndexOf('@', StringComparison.Ordinal)];

    internal string Domain => Jid[(Jid.IndexOf('@', StringComparison.Ordinal) + 1)..];

    internal void Validate()
    {
        var at = Jid?.IndexOf('@', StringComparison.Ordinal) ?? -1;
        if (Jid is null || at <= 0 || at == Jid.Length - 1 || Jid.Contains('/', StringComparison.Ordinal))
            throw new ArgumentException($"Jid must be a bare JID local@domain, got '{Jid}'", nameof(Jid));
        if (Password is null && ClientCertificate is null)
            throw new ArgumentException("Password is required unless a ClientCertificate is given (SASL EXTERNAL)", nameof(Password));
        if (!Switching.NodeId.IsValid(NodeId)) throw new ArgumentException($"NodeId must be 32 lower-case hex characters, got '{NodeId}'", nameof(NodeId));
        if (Overlays is null || Overlays.Count == 0) throw new ArgumentException("Overlays must name at least one overlay", nameof(Overlays));
        if (Port is { } port && port is < 1 or > 65535) throw new ArgumentException("Port must be 1..65535", nameof(Port));
        if (TrustedCaCertificatePath is not null && !File.Exists(TrustedCaCertificatePath))
            throw new ArgumentException($"TrustedCaCertificatePath '{TrustedCaCertificatePath}' does not exist", nameof(TrustedCaCertificatePath));
        if (PinnedCertificateSha256 is not null && NormalizedPin is null)
            throw new ArgumentException("PinnedCertificateSha256 must be 64 hex digits (colons allowed)", nameof(PinnedCertificateSha256));
        if (SaslMechanisms is null || SaslMechanisms.Count == 0 || SaslMechanisms.Any(m => m is not ("EXTERNAL" or "SCRAM-SHA-256" or "SCRAM-SHA-1" or "PLAIN")))
            throw new ArgumentException("SaslMechanisms must list one or more of EXTERNAL, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN", nameof(SaslMechanisms));
        if (MaxStanzaBytes < 4096) throw new ArgumentException("MaxStanzaBytes must be at least 4096", nameof(MaxStanzaBytes));
        if (KeepaliveInterval <= TimeSpan.Zero) throw new ArgumentException("KeepaliveInterval must be positive", nameof(KeepaliveInterval));
        if (KeepaliveTimeout <= TimeSpan.Zero) throw new ArgumentException("KeepaliveTimeout must be positive", nameof(KeepaliveTimeout));
        if (ConnectTimeout <= TimeSpan.Zero) throw new ArgumentException("ConnectTimeout must be positive", nameof(ConnectTimeout));
        if (ReconnectMinDelay <= TimeSpan.Zero) throw new ArgumentException("ReconnectMinDelay must be positive", nameof(ReconnectMinDelay));
        if (ReconnectMaxDelay < ReconnectMinDelay) throw new ArgumentException("ReconnectMaxDelay must be at least ReconnectMinDelay", nameof(ReconnectMaxDelay));
        if (RequestTimeout <= TimeSpan.Zero) throw new ArgumentException("RequestTimeout must be positive", nameof(RequestTimeout));
    }

    internal string? NormalizedPin
    {
        get
        {
            if (PinnedCertificateSha256 is null) return null;
            var hex = PinnedCertificateSha256.Replace(":", "", StringComparison.Ordinal).ToLowerInvariant();
            return hex.Length == 64 && hex.All(Uri.IsHexDigit) ? hex : null;
        }
    }
}
