using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace Overlay.Nat.Turn;

/// <summary>How a TURN client reaches its server (RFC 8656 §3.1); the relayed address is UDP in every case.</summary>
internal enum TurnTransport
{
    /// <summary>Over UDP: requests retransmitted, data as ChannelData datagrams.</summary>
    Udp,

    /// <summary>Over one TCP connection: STUN and ChannelData (padded to 4 bytes) framed by their own headers.</summary>
    Tcp,

    /// <summary>As <see cref="Tcp"/>, inside TLS (a <c>turns:</c> server, often on port 443 to pass firewalls).</summary>
    Tls,
}

/// <summary>A TURN server and the long-term credentials to use with it (RFC 8656).</summary>
/// <param name="EndPoint">The server's endpoint.</param>
/// <param name="Username">USERNAME.</param>
/// <param name="Password">Password for the long-term key.</param>
internal sealed record TurnServer(IPEndPoint EndPoint, string Username, string Password)
{
    /// <summary>Requested allocation lifetime (RFC 8656 §3.2: default 10 minutes).</summary>
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How the server is reached.</summary>
    public TurnTransport Transport { get; init; } = TurnTransport.Udp;

    /// <summary>TLS: the name the server's certificate must carry (null: its IP address).</summary>
    public string? ServerName { get; init; }

    /// <summary>TLS: the only roots trusted for the server's certificate (null: the system's).</summary>
    public X509Certificate2Collection? TrustedRoots { get; init; }

    /// <summary>A connection-oriented transport (TCP or TLS).</summary>
    public bool IsStream => Transport != TurnTransport.Udp;

    /// <summary>Throws with the setting's name when a value is invalid.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(EndPoint, nameof(EndPoint));
        if (string.IsNullOrEmpty(Username)) throw new ArgumentException("Username is required", nameof(Username));
        if (Password is null) throw new ArgumentException("Password is required", nameof(Password));
        if (Lifetime < TimeSpan.FromMinutes(1)) throw new ArgumentOutOfRangeException(nameof(Lifetime), Lifetime, "Lifetime must be at least one minute");
    }

    public override string ToString() => $"{Transport.ToString().ToUpperInvariant()} {EndPoint}";
}
