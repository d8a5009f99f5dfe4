using System.Net;

namespace Overlay;

/// <summary>
/// Everything a node needs to run: its identity, how it signals, which STUN/TURN servers it may use and
/// the overlays it joins. Immutable; made by <see cref="OverlayNodeBuilder"/> or read from a JSON file by
/// <see cref="OverlayConfiguration"/>, and validated once by <see cref="Validate"/>.
/// </summary>
public sealed record OverlayNodeOptions
{
    /// <summary>
    /// The node's 128-bit ID as 32 lower-case hex characters (EdgeVPN key <c>NodeId</c>). It is derived from the node's
    /// key (<see cref="Links.NodeIdentity.NodeId"/>); when set, it must be that one (a check against a copied
    /// configuration). Null takes the key's.
    /// </summary>
    public string? NodeId { get; init; }

    /// <summary>How the node finds peers and negotiates links (EdgeVPN key <c>Signal</c>).</summary>
    public SignalingOptions Signal { get; init; } = new InProcessSignalingOptions();

    /// <summary>STUN servers for server-reflexive candidates, as host:port (EdgeVPN key <c>Stun</c>).</summary>
    public IReadOnlyList<string> Stun { get; init; } = [];

    /// <summary>TURN servers for relayed candidates (EdgeVPN key <c>Turn</c>).</summary>
    public IReadOnlyList<TurnServerOptions> Turn { get; init; } = [];

    /// <summary>Where the node's long-lived certificate lives; created there on first use. Null keeps it in memory only.</summary>
    public string? CertificateFile { get; init; }

    /// <summary>
    /// A directory the node keeps its state in (key <c>StateDirectory</c>): created owner-only (0700) when missing, it
    /// holds the node's key (<c>node.pem</c>, 0600, created on first start), so the node ID survives restarts.
    /// <see cref="CertificateFile"/>, when also set, names the key instead. Null keeps no state.
    /// </summary>
    public string? StateDirectory { get; init; }

    /// <summary>Where the node's key is kept: <see cref="CertificateFile"/>, else <c>node.pem</c> in <see cref="StateDirectory"/>, else nowhere.</summary>
    internal string? KeyFile => CertificateFile ?? (StateDirectory is { } directory ? System.IO.Path.Combine(directory, "node.pem") : null);

    /// <summary>Names of network interfaces never gathered as ICE host candidates (the overlays' own TAPs always are excluded).</summary>
    public IReadOnlyList<string> IgnoredNetInterfaces { get; init; } = [];

    /// <summary>Link setup, keepalive and recovery timings.</summary>
    public LinkTimings Links { get; init; } = new();

    /// <summary>How frames move through the node (UDP segmentation offload).</summary>
    public DataPathOptions DataPath { get; init; } = new();

    /// <summary>The overlays the node joins, at least one (EdgeVPN key <c>Overlays</c>).</summary>
    public IReadOnlyList<OverlayOptions> Overlays { get; init; } = [];

    /// <summary>The file these options were read from (<see cref="OverlayConfiguration.Load"/>), checked for exposed secrets at start.</summary>
    internal string? SourceFile { get; init; }

    /// <summary>Checks every setting; throws <see cref="OverlayConfigurationException"/> naming the first bad key.</summary>
    public void Validate()
    {
        if (NodeId is not null && !Switching.NodeId.IsValid(NodeId))
            throw new OverlayConfigurationException("NodeId", "must be 32 lower-case hex characters (a 128-bit ID)");
        if (StateDirectory is not null && string.IsNullOrWhiteSpace(StateDirectory))
            throw new OverlayConfigurationException("StateDirectory", "must name a directory");
        Signal.Validate("Signal");
        for (var i = 0; i < Stun.Count; i++)
            if (!OptionChecks.IsHostPort(Stun[i]))
                throw new OverlayConfigurationException($"Stun[{i}]", $"'{Stun[i]}' is not host:port");
        for (var i = 0; i < Turn.Count; i++) Turn[i].Validate($"Turn[{i}]");
        Links.Validate("Links");
        if (DataPath.EventLoops is < 1 or > DataPathOptions.MaxEventLoops)
            throw new OverlayConfigurationException("DataPath.EventLoops", $"{DataPath.EventLoops} is not 1..{DataPathOptions.MaxEventLoops}");
        if (Overlays.Count == 0)
            throw new OverlayConfigurationException("Overlays", "at least one overlay is required");
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var devices = new HashSet<string>(StringComparer.Ordinal);
        foreach (var overlay in Overlays)
        {
            overlay.Validate($"Overlays.{overlay.Id}");
            if (!ids.Add(overlay.Id))
                throw new OverlayConfigurationException($"Overlays.{overlay.Id}", "the overlay is listed twice");
            if (overlay.NetDevice.Name is { } name && !devices.Add(name))
                throw new OverlayConfigurationException($"Overlays.{overlay.Id}.NetDevice.Name", $"'{name}' is used by another overlay");
            if (Overlays.Count > 1 && Signal is XmppSignalingOptions && overlay.Groups.Count == 0)
                throw new OverlayConfigurationException($"Overlays.{overlay.Id}.Groups",
                    "is required when one XMPP account serves several overlays: name the roster groups whose members belong to this overlay");
        }
    }
}

/// <summary>
/// A TURN server with long-term credentials (RFC 8656). Without a transport it is tried over UDP and over TCP on its
/// port at once; TLS is asked for with a <c>turns:</c> address or <see cref="Transport"/> <c>"tls"</c>.
/// </summary>
/// <param name="Address">host:port of the server, optionally as <c>turn:host:port</c> or <c>turns:host:port</c> (TLS).</param>
/// <param name="User">Long-term credential user name.</param>
/// <param name="Password">Long-term credential password.</param>
public sealed record TurnServerOptions(string Address, string User, string Password)
{
    /// <summary><c>"udp"</c>, <c>"tcp"</c>, <c>"tls"</c>, or null: UDP and TCP (TLS for a <c>turns:</c> address).</summary>
    public string? Transport { get; init; }

    /// <summary>PEM file of the CA certificates trusted for a TLS server (null: the system's).</summary>
    public string? CaFile { get; init; }

    /// <summary>host:port without the scheme.</summary>
    internal string HostPort => Address.StartsWith("turns:", StringComparison.OrdinalIgnoreCase) ? Address[6..]
        : Address.StartsWith("turn:", StringComparison.OrdinalIgnoreCase) ? Address[5..] : Address;

    /// <summary>The transports to reach the server over, in order of preference.</summary>
    internal Nat.Turn.TurnTransport[] Transports =>
        (Transport?.ToUpperInvariant(), Address.StartsWith("turns:", StringComparison.OrdinalIgnoreCase)) switch
        {
            ("TLS", _) or (null, true) => [Nat.Turn.TurnTransport.Tls],
            ("TCP", _) => [Nat.Turn.TurnTransport.Tcp],
            ("UDP", _) => [Nat.Turn.TurnTransport.Udp],
            _ => [Nat.Turn.TurnTransport.Udp, Nat.Turn.TurnTransport.Tcp],
        };

    internal void Validate(string key)
    {
        if (!OptionChecks.IsHostPort(HostPort)) throw new OverlayConfigurationException($"{key}.Address", $"'{Address}' is not host:port, turn:host:port or turns:host:port");
        if (string.IsNullOrEmpty(User)) throw new OverlayConfigurationException($"{key}.User", "is required");
        if (string.IsNullOrEmpty(Password)) throw new OverlayConfigurationException($"{key}.Password", "is required");
        if (Transport is not (null or "udp" or "tcp" or "tls"))
            throw new OverlayConfigurationException($"{key}.Transport", $"'{Transport}' is not udp, tcp or tls");
        if (Transport is "udp" or "tcp" && Address.StartsWith("turns:", StringComparison.OrdinalIgnoreCase))
            throw new OverlayConfigurationException($"{key}.Transport", $"a turns: address is reached over TLS, not {Transport}");
        if (CaFile is not null && !File.Exists(CaFile)) throw new OverlayConfigurationException($"{key}.CaFile", $"'{CaFile}' does not exist");
    }
}

/// <summary>Thrown when a setting is missing or invalid; <see cref="Key"/> names it as in the JSON file.</summary>
public sealed class OverlayConfigurationException : Exception
{
    /// <summary>Creates the exception for <paramref name="key"/>.</summary>
    public OverlayConfigurationException(string key, string problem, Exception? inner = null)
        : base($"configuration {key}: {problem}", inner)
    {
        Key = key;
        Problem = problem;
    }

    /// <summary>Creates an exception with a message only.</summary>
    public OverlayConfigurationException() : this("?", "invalid") { }

    /// <summary>Creates an exception with a message only.</summary>
    public OverlayConfigurationException(string message) : this("?", message) { }

    /// <summary>Creates an exception with a message and inner exception.</summary>
    public OverlayConfigurationException(string message, Exception inner) : this("?", message, inner) { }

    /// <summary>The setting, e.g. <c>Overlays.A0FB389.NetDevice.PrefixLen</c>.</summary>
    public string Key { get; }

    /// <summary>What is wrong with it.</summary>
    public string Problem { get; }
}

internal static class OptionChecks
{
    /// <summary>host:port, [v6]:port or a bare IPv6 literal is not accepted (ambiguous).</summary>
    public static bool IsHostPort(string value)
    {
        if (string.IsNullOrWhiteSpace(value)) return false;
        if (IPEndPoint.TryParse(value, out var ep)) return ep.Port != 0 && (value.StartsWith('[') || ep.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6);
        var colon = value.LastIndexOf(':');
        if (colon <= 0) return false;
        var host = value[..colon];
        return Uri.CheckHostName(host) == UriHostNameType.Dns
            && int.TryParse(value.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            && port is > 0 and <= 65535;
    }
}
