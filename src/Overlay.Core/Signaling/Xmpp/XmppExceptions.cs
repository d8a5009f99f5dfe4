namespace Overlay.Signaling.Xmpp;

/// <summary>Base of the XMPP client's errors.</summary>
public class XmppException : SignalingException
{
    /// <summary>Creates the exception.</summary>
    public XmppException() { }

    /// <summary>Creates the exception with a message.</summary>
    public XmppException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public XmppException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// SASL authentication failed: wrong password or unknown account (condition <c>not-authorized</c>), no
/// acceptable mechanism, or a server whose SCRAM signature proves it does not know the password.
/// </summary>
public sealed class XmppAuthenticationException : XmppException
{
    /// <summary>Creates the exception.</summary>
    public XmppAuthenticationException() { }

    /// <summary>Creates the exception with a message.</summary>
    public XmppAuthenticationException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public XmppAuthenticationException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception with the SASL failure condition (RFC 6120 §6.5).</summary>
    public XmppAuthenticationException(string condition, string message) : base(message) { Condition = condition; }

    /// <summary>The SASL failure condition, e.g. <c>not-authorized</c>, or empty.</summary>
    public string Condition { get; } = "";
}

/// <summary>The server's TLS certificate failed validation (untrusted chain, wrong name, pin mismatch).</summary>
public sealed class XmppCertificateException : XmppException
{
    /// <summary>Creates the exception.</summary>
    public XmppCertificateException() { }

    /// <summary>Creates the exception with a message.</summary>
    public XmppCertificateException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public XmppCertificateException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The server closed the stream with a stream error (RFC 6120 §4.9).</summary>
public sealed class XmppStreamErrorException : XmppException
{
    /// <summary>Creates the exception.</summary>
    public XmppStreamErrorException() { }

    /// <summary>Creates the exception with a message.</summary>
    public XmppStreamErrorException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public XmppStreamErrorException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception with the stream error condition.</summary>
    public XmppStreamErrorException(string condition, string message) : base(message) { Condition = condition; }

    /// <summary>The defined condition, e.g. <c>system-shutdown</c>, <c>conflict</c>.</summary>
    public string Condition { get; } = "";
}

/// <summary>
/// The server broke the protocol: malformed or prohibited XML (DTDs, entity expansion), a stanza over the
/// size limit, an unexpected element, no STARTTLS offered, or the connection closed mid-negotiation.
/// </summary>
public sealed class XmppProtocolException : XmppException
{
    /// <summary>Creates the exception.</summary>
    public XmppProtocolException() { }

    /// <summary>Creates the exception with a message.</summary>
    public XmppProtocolException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public XmppProtocolException(string message, Exception innerException) : base(message, innerException) { }
}
