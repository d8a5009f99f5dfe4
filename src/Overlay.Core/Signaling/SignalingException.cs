namespace Overlay.Signaling;

/// <summary>A signaling operation failed (peer unknown or unreachable, channel not connected, rejected).</summary>
public class SignalingException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SignalingException() { }

    /// <summary>Creates the exception with a message.</summary>
    public SignalingException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public SignalingException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>A request got no response in time.</summary>
public sealed class SignalingTimeoutException : SignalingException
{
    /// <summary>Creates the exception.</summary>
    public SignalingTimeoutException() { }

    /// <summary>Creates the exception with a message.</summary>
    public SignalingTimeoutException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public SignalingTimeoutException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The peer answered a request with a rejection.</summary>
internal sealed class SignalRejectedException : SignalingException
{
    /// <summary>Creates the exception.</summary>
    public SignalRejectedException() { }

    /// <summary>Creates the exception with a message.</summary>
    public SignalRejectedException(string message) : base(message) { Reason = message; }

    /// <summary>Creates the exception with a message and cause.</summary>
    public SignalRejectedException(string message, Exception innerException) : base(message, innerException) { Reason = message; }

    /// <summary>The reason the peer gave.</summary>
    public string Reason { get; } = "";
}
