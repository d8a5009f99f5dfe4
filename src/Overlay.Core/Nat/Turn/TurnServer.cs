using System.Net;

namespace Overlay.Nat.Turn;

/// <summary>A TURN server and the long-term credentials to use with it (RFC 8656).</summary>
/// <param name="EndPoint">The server's UDP endpoint.</param>
/// <param name="Username">USERNAME.</param>
/// <param name="Password">Password for the long-term key.</param>
internal sealed record TurnServer(IPEndPoint EndPoint, string Username, string Password)
{
    /// <summary>Requested allocation lifetime (RFC 8656 §3.2: default 10 minutes).</summary>
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Throws with the setting's name when a value is invalid.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(EndPoint, nameof(EndPoint));
        if (string.IsNullOrEmpty(Username)) throw new ArgumentException("Username is required", nameof(Username));
        if (Password is null) throw new ArgumentException("Password is required", nameof(Password));
        if (Lifetime < TimeSpan.FromMinutes(1)) throw new ArgumentOutOfRangeException(nameof(Lifetime), Lifetime, "Lifetime must be at least one minute");
    }
}
