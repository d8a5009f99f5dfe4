namespace Overlay.Tap;

/// <summary>Why a TAP device could not be created or configured.</summary>
public enum TapError
{
    /// <summary>The process lacks CAP_NET_ADMIN (run as root or grant the capability).</summary>
    PermissionDenied,

    /// <summary>The TUN/TAP driver's device node (/dev/net/tun) is missing.</summary>
    NoTunDevice,

    /// <summary>An interface with the requested name already exists.</summary>
    NameInUse,

    /// <summary>The interface name is empty, longer than 15 characters or contains '/', ':' or whitespace.</summary>
    InvalidName,

    /// <summary>The MTU is outside what the device accepts (68..65535).</summary>
    InvalidMtu,

    /// <summary>A MAC or IP address was refused.</summary>
    InvalidAddress,

    /// <summary>This platform has no TAP support (Linux only).</summary>
    Unsupported,

    /// <summary>Any other failure of the operating system.</summary>
    SystemError,
}

/// <summary>A TAP device could not be created or configured; <see cref="Reason"/> says why.</summary>
public sealed class TapDeviceException : IOException
{
    /// <summary>Creates the exception.</summary>
    public TapDeviceException(TapError reason, string message, int errno = 0)
        : base(message)
    {
        Reason = reason;
        Errno = errno;
    }

    /// <summary>Creates the exception.</summary>
    public TapDeviceException() : this(TapError.SystemError, "TAP device error") { }

    /// <summary>Creates the exception.</summary>
    public TapDeviceException(string message) : this(TapError.SystemError, message) { }

    /// <summary>Creates the exception.</summary>
    public TapDeviceException(string message, Exception inner) : base(message, inner) => Reason = TapError.SystemError;

    /// <summary>Why it failed.</summary>
    public TapError Reason { get; }

    /// <summary>The operating system's error number, or 0.</summary>
    public int Errno { get; }
}
