namespace Overlay.Host;

/// <summary>
/// What the host's exit status means (documented in the README; scripts and systemd's <c>RestartPreventExitStatus=</c>
/// rely on them, so a number never changes its meaning).
/// </summary>
public static class ExitCodes
{
    /// <summary>Stopped cleanly (Ctrl+C, SIGTERM, systemctl stop), or <c>status</c> printed the node's status.</summary>
    public const int Ok = 0;

    /// <summary>An unexpected error; the message says what.</summary>
    public const int Failure = 1;

    /// <summary>The command line or the configuration file is wrong (the message names the option or key), or the node's key cannot be read.</summary>
    public const int Configuration = 2;

    /// <summary>A virtual NIC could not be opened: no CAP_NET_ADMIN, no /dev/net/tun, or the name is in use.</summary>
    public const int Device = 3;

    /// <summary>The signaling server could not be reached (or timed out) when the node started.</summary>
    public const int SignalingUnreachable = 4;

    /// <summary>The signaling server refused the node's credentials, or its TLS certificate failed validation.</summary>
    public const int SignalingAuthentication = 5;

    /// <summary>The control socket, the map's or the metrics' address is taken (another node runs with the same socket?) or cannot be created.</summary>
    public const int ControlUnavailable = 6;

    /// <summary><c>status</c>: no node answers at the control socket.</summary>
    public const int NotRunning = 7;

    /// <summary><c>status</c>: the node refused this user (only the user the node runs as, and root, may ask).</summary>
    public const int NotPermitted = 8;

    /// <summary>Interrupted (Ctrl+C or SIGTERM) before the node was up.</summary>
    public const int Interrupted = 130;
}
