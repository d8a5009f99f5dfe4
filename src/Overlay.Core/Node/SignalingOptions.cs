using Overlay.Signaling.InProcess;

namespace Overlay;

/// <summary>How a node signals: through an XMPP server, or through an in-process hub shared by nodes of one process.</summary>
public abstract record SignalingOptions
{
    private protected SignalingOptions() { }

    internal abstract void Validate(string key);
}

/// <summary>
/// The embedded default: nodes in one process find each other through an in-process hub the application creates
/// and hands to each of them (demo, tests, simulation). Nodes given the same <see cref="Hub"/> meet.
/// </summary>
public sealed record InProcessSignalingOptions : SignalingOptions
{
    /// <summary>The hub to signal through; null gives the node a hub of its own, where it meets no one.</summary>
    public InProcessSignalingHub? Hub { get; init; }

    internal override void Validate(string key) { }
}

/// <summary>How the XMPP client proves who it is.</summary>
public enum XmppAuthenticationMethod
{
    /// <summary>SCRAM-SHA-256, SCRAM-SHA-1, or PLAIN inside TLS, with <see cref="XmppSignalingOptions.Password"/> (EdgeVPN: PASSWORD).</summary>
    Password,

    /// <summary>SASL EXTERNAL with the client certificate in <see cref="XmppSignalingOptions.ClientCertificateFile"/> (EdgeVPN: X509).</summary>
    X509,
}

/// <summary>Signaling through an XMPP server (RFC 6120/6121); overlay membership is the account's shared roster group.</summary>
public sealed record XmppSignalingOptions : SignalingOptions
{
    /// <summary>Server host name or address; with no <see cref="Port"/> set, a DNS SRV lookup of <c>_xmpp-client._tcp</c> is tried first (EdgeVPN key <c>HostAddress</c>).</summary>
    public required string HostAddress { get; init; }

    /// <summary>Server port (EdgeVPN key <c>Port</c>); null means SRV lookup, then 5222.</summary>
    public int? Port { get; init; }

    /// <summary>Full account name, <c>user@domain</c> (EdgeVPN key <c>Username</c>).</summary>
    public required string Username { get; init; }

    /// <summary>Password for <see cref="XmppAuthenticationMethod.Password"/> (EdgeVPN key <c>Password</c>).</summary>
    public string? Password { get; init; }

    /// <summary>EdgeVPN key <c>AuthenticationMethod</c>: PASSWORD or X509.</summary>
    public XmppAuthenticationMethod AuthenticationMethod { get; init; } = XmppAuthenticationMethod.Password;

    /// <summary>PEM file of a CA to trust for the server's certificate instead of the system store.</summary>
    public string? CaFile { get; init; }

    /// <summary>SHA-256 fingerprint (hex, colons optional) the server's certificate must have, instead of chain validation.</summary>
    public string? PinnedCertificateSha256 { get; init; }

    /// <summary>PEM file with the client certificate and key for <see cref="XmppAuthenticationMethod.X509"/>.</summary>
    public string? ClientCertificateFile { get; init; }

    /// <summary>
    /// Time between XEP-0199 pings to the server. With <see cref="PingTimeout"/> it bounds how long a dead connection
    /// (a server or NAT that dropped it silently) goes unnoticed. Links are not affected either way.
    /// </summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a ping, or any request to the server, may go unanswered before the connection counts as lost.</summary>
    public TimeSpan PingTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long connecting may take: TCP, TLS, authentication and the session's setup.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The first delay before reconnecting after a lost connection; it doubles with each failed attempt, with jitter.</summary>
    public TimeSpan ReconnectMinDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest delay between reconnection attempts.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(60);

    internal override void Validate(string key)
    {
        if (string.IsNullOrWhiteSpace(HostAddress)) throw new OverlayConfigurationException($"{key}.HostAddress", "is required");
        if (Port is { } port && port is <= 0 or > 65535) throw new OverlayConfigurationException($"{key}.Port", $"{port} is not a TCP port");
        var at = Username?.IndexOf('@', StringComparison.Ordinal) ?? -1;
        if (at <= 0 || at == Username!.Length - 1) throw new OverlayConfigurationException($"{key}.Username", "must be a bare JID, user@domain");
        switch (AuthenticationMethod)
        {
            case XmppAuthenticationMethod.Password when string.IsNullOrEmpty(Password):
                throw new OverlayConfigurationException($"{key}.Password", "is required with AuthenticationMethod PASSWORD");
            case XmppAuthenticationMethod.X509 when string.IsNullOrEmpty(ClientCertificateFile):
                throw new OverlayConfigurationException($"{key}.ClientCertificateFile", "is required with AuthenticationMethod X509");
        }
        if (CaFile is not null && !File.Exists(CaFile)) throw new OverlayConfigurationException($"{key}.CaFile", $"'{CaFile}' does not exist");
        foreach (var (name, value) in new[] { (nameof(PingInterval), PingInterval), (nameof(PingTimeout), PingTimeout), (nameof(ConnectTimeout), ConnectTimeout),
                     (nameof(ReconnectMinDelay), ReconnectMinDelay), (nameof(ReconnectMaxDelay), ReconnectMaxDelay) })
            if (value <= TimeSpan.Zero) throw new OverlayConfigurationException($"{key}.{name}", $"must be positive, not {value.TotalSeconds} s");
        if (ReconnectMaxDelay < ReconnectMinDelay)
            throw new OverlayConfigurationException($"{key}.ReconnectMaxDelay", $"must be at least ReconnectMinDelay ({ReconnectMinDelay.TotalSeconds} s)");
        if (ClientCertificateFile is not null && !File.Exists(ClientCertificateFile))
            throw new OverlayConfigurationException($"{key}.ClientCertificateFile", $"'{ClientCertificateFile}' does not exist");
        if (PinnedCertificateSha256 is { } pin && Convert.FromHexString(pin.Replace(":", "", StringComparison.Ordinal)).Length != 32)
            throw new OverlayConfigurationException($"{key}.PinnedCertificateSha256", "must be a SHA-256 fingerprint (64 hex digits)");
    }
}
