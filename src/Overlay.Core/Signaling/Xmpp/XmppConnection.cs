using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Overlay.Signaling.Xmpp;

/// <summary>
/// One negotiated client-to-server XMPP stream (RFC 6120): TCP, STARTTLS (required), SASL, resource
/// binding. After <see cref="ConnectAsync"/> it reads top-level elements and writes raw stanzas; the
/// session logic (roster, presence, pings, reconnecting) lives in <see cref="XmppSignalingChannel"/>.
/// </summary>
internal sealed class XmppConnection : IAsyncDisposable
{
    public const string ClientNamespace = "jabber:client";
    private const string TlsNamespace = "urn:ietf:params:xml:ns:xmpp-tls";
    private const string SaslNamespace = "urn:ietf:params:xml:ns:xmpp-sasl";
    private const string BindNamespace = "urn:ietf:params:xml:ns:xmpp-bind";
    private const string SessionNamespace = "urn:ietf:params:xml:ns:xmpp-session";
    private const string StanzaErrorNamespace = "urn:ietf:params:xml:ns:xmpp-stanzas";

    private readonly XmppChannelOptions _options;
    private readonly ILogger _logger;
    private readonly XmppStreamParser _parser = new();
    private readonly XmppItemScanner _scanner = new();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private Socket? _socket;
    private Stream? _stream;
    private PipeReader? _reader;
    private int _disposed;

    private XmppConnection(XmppChannelOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
    }

    /// <summary>The full JID the server bound.</summary>
    public string BoundJid { get; private set; } = "";

    /// <summary>The mechanism SASL authentication used.</summary>
    public string Mechanism { get; private set; } = "";

    public static async Task<XmppConnection> ConnectAsync(XmppChannelOptions options, ILogger logger, CancellationToken cancellationToken)
    {
        var connection = new XmppConnection(options, logger);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        try
        {
            await connection.NegotiateAsync(timeout.Token).ConfigureAwait(false);
            return connection;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new XmppException($"connecting to {options.Host ?? options.Domain} timed out after {options.ConnectTimeout.TotalSeconds:0.#} s", ex);
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new XmppException($"connection to {options.Host ?? options.Domain} failed: {ex.Message}", ex);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task NegotiateAsync(CancellationToken ct)
    {
        var host = _options.Host ?? _options.Domain;
        await ConnectTcpAsync(host, ct).ConfigureAwait(false);
        _stream = new NetworkStream(_socket!, ownsSocket: false);
        _reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(leaveOpen: true));

        var features = await OpenStreamAsync(ct).ConfigureAwait(false);
        if (features.Child("starttls", TlsNamespace) is null)
            throw new XmppProtocolException($"{host} does not offer STARTTLS; refusing to authenticate without TLS");
        await SendAsync($"<starttls xmlns='{TlsNamespace}'/>", ct).ConfigureAwait(false);
        var answer = await ReadElementAsync(ct).ConfigureAwait(false);
        if (answer.Name != "proceed" || answer.Namespace != TlsNamespace)
            throw new XmppProtocolException($"STARTTLS refused by the server (<{answer.Name}/>)");

        // RFC 6120 §5.4.3.3: after <proceed/> nothing more is read from the plain stream.
        await _reader.CompleteAsync().ConfigureAwait(false);
        await StartTlsAsync(ct).ConfigureAwait(false);

        features = await OpenStreamAsync(ct).ConfigureAwait(false);
        await AuthenticateAsync(features, ct).ConfigureAwait(false);
        features = await OpenStreamAsync(ct).ConfigureAwait(false);
        await BindAsync(features, ct).ConfigureAwait(false);
    }

    /// <summary>Connects to the configured port, or to the SRV targets in order and then host:5222 (RFC 6120 §3.2).</summary>
    private async Task ConnectTcpAsync(string host, CancellationToken ct)
    {
        var targets = new List<(string Host, int Port)>();
        if (_options.Port is { } port)
        {
            targets.Add((host, port));
        }
        else
        {
            var resolver = _options.DnsServer ?? DnsSrvResolver.SystemResolver();
            if (resolver is not null)
            {
                try
                {
                    var records = await DnsSrvResolver.QueryAsync("_xmpp-client._tcp." + host, resolver, TimeSpan.FromSeconds(3), ct).ConfigureAwait(false);
                    if (records.Count == 1 && records[0].Target == ".")
                        throw new XmppException($"{host} declares that it offers no XMPP client service (SRV target '.')");
                    targets.AddRange(records.Select(r => (r.Target.TrimEnd('.'), (int)r.Port)));
                    _logger.LogDebug("SRV _xmpp-client._tcp.{Host}: {Targets}", host, string.Join(", ", targets));
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException && !ct.IsCancellationRequested)
                {
                    _logger.LogDebug("SRV lookup for {Host} failed: {Message}", host, ex.Message);
                }
            }
            targets.Add((host, 5222)); // RFC 6120 §3.2.2 fallback
        }
        Exception? last = null;
        foreach (var (targetHost, targetPort) in targets)
        {
            var socket = _options.SocketFactory?.Invoke() ?? new Socket(SocketType.Stream, ProtocolType.Tcp);
            socket.NoDelay = true;
            try
            {
                await socket.ConnectAsync(targetHost, targetPort, ct).ConfigureAwait(false);
                _socket = socket;
                return;
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                last = new SocketException((int)ex.SocketErrorCode, $"{targetHost}:{targetPort}: {ex.Message}");
            }
        }
        throw last!;
    }

    private async Task StartTlsAsync(CancellationToken ct)
    {
        string? certificateError = null;
        var ssl = new SslStream(_stream!, leaveInnerStreamOpen: false);
        var tls = new SslClientAuthenticationOptions
        {
            TargetHost = _options.Domain,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) => ServerCertificateValidator.Validate(_options, certificate, chain, errors, out certificateError),
        };
        if (_options.ClientCertificate is not null) tls.ClientCertificates = new X509CertificateCollection { _options.ClientCertificate };
        try
        {
            await ssl.AuthenticateAsClientAsync(tls, ct).ConfigureAwait(false);
        }
        catch (AuthenticationException ex) when (certificateError is not null)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new XmppCertificateException($"the server certificate of {_options.Domain} is not trusted: {certificateError}", ex);
        }
        catch (AuthenticationException ex)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new XmppProtocolException($"TLS handshake with {_options.Domain} failed: {ex.Message}", ex);
        }
        _stream = ssl;
        _reader = PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true));
    }

    /// <summary>Opens (or restarts) the stream and returns the server's features.</summary>
    private async Task<XmppElement> OpenStreamAsync(CancellationToken ct)
    {
        _parser.Reset();
        _scanner.Reset();
        await SendAsync($"<?xml version='1.0'?><stream:stream to='{XmppElement.Escape(_options.Domain)}' version='1.0' xml:lang='en' xmlns='{ClientNamespace}' xmlns:stream='{XmppStreamParser.StreamNamespace}'>", ct).ConfigureAwait(false);
        var (token, header) = await ReadAsync(ct).ConfigureAwait(false);
        if (token != XmppToken.StreamHeader) throw new XmppProtocolException("the server did not open a stream");
        if (header!.Attribute("version") is not { } version || !version.StartsWith("1.", StringComparison.Ordinal))
            throw new XmppProtocolException($"the server speaks stream version '{header.Attribute("version")}', not 1.x");
        var features = await ReadElementAsync(ct).ConfigureAwait(false);
        if (features.Name != "features" || features.Namespace != XmppStreamParser.StreamNamespace)
            throw new XmppProtocolException($"expected stream features, got <{features.Name}/>");
        return features;
    }

    private async Task AuthenticateAsync(XmppElement features, CancellationToken ct)
    {
        var offered = features.Child("mechanisms", SaslNamespace)?.Children.Where(c => c.Name == "mechanism").Select(c => c.Text.Trim()).ToList() ?? [];
        ScramClient? scram = null;
        var mechanism = _options.SaslMechanisms.FirstOrDefault(m => offered.Contains(m) && m switch
        {
            "EXTERNAL" => _options.ClientCertificate is not null,
            "PLAIN" => _options.Password is not null && _stream is SslStream,
            _ => _options.Password is not null,
        }) ?? throw new XmppAuthenticationException("no-mechanism",
            $"no acceptable SASL mechanism: the server offers [{string.Join(", ", offered)}], the client allows [{string.Join(", ", _options.SaslMechanisms)}]");
        string initial;
        switch (mechanism)
        {
            case "EXTERNAL":
                initial = "="; // RFC 6120 §6.4.2: empty initial response, the identity comes from the certificate
                break;
            case "PLAIN":
                initial = Convert.ToBase64String(Encoding.UTF8.GetBytes("\0" + _options.LocalPart + "\0" + _options.Password));
                break;
            default:
                scram = new ScramClient(mechanism, _options.LocalPart, _options.Password!);
                initial = Convert.ToBase64String(Encoding.UTF8.GetBytes(scram.ClientFirstMessage));
                break;
        }
        Mechanism = mechanism;
        await SendAsync($"<auth xmlns='{SaslNamespace}' mechanism='{mechanism}'>{initial}</auth>", ct).ConfigureAwait(false);

        var verified = scram is null;
        while (true)
        {
            var e = await ReadElementAsync(ct).ConfigureAwait(false);
            if (e.Namespace != SaslNamespace) throw new XmppProtocolException($"unexpected <{e.Name}/> during SASL");
            switch (e.Name)
            {
                case "challenge":
                    if (scram is null) throw new XmppProtocolException($"unexpected SASL challenge for {mechanism}");
                    var challenge = DecodeBase64(e.Text);
                    string response;
                    if (challenge.StartsWith("v=", StringComparison.Ordinal) || challenge.StartsWith("e=", StringComparison.Ordinal))
                    {
                        if (!scram.VerifyServerFinal(challenge, out var verr)) throw new XmppAuthenticationException("server-signature", verr!);
                        verified = true;
                        response = "";
                    }
                    else
                    {
                        if (!scram.TryClientFinal(challenge, out var final, out var cerr)) throw new XmppAuthenticationException("malformed-challenge", $"SCRAM: {cerr}");
                        response = Convert.ToBase64String(Encoding.UTF8.GetBytes(final));
                    }
                    await SendAsync($"<response xmlns='{SaslNamespace}'>{response}</response>", ct).ConfigureAwait(false);
                    break;
                case "success":
                    if (scram is not null && !verified)
                    {
                        if (!scram.VerifyServerFinal(DecodeBase64(e.Text), out var serr)) throw new XmppAuthenticationException("server-signature", serr!);
                    }
                    _logger.LogDebug("authenticated as {Jid} with {Mechanism}", _options.Jid, mechanism);
                    return;
                case "failure":
                    var condition = e.Children.FirstOrDefault(c => c.Name != "text")?.Name ?? "unknown";
                    var text = e.Child("text", SaslNamespace)?.Text;
                    throw new XmppAuthenticationException(condition,
                        $"authentication of {_options.Jid} with {mechanism} failed: {condition}{(string.IsNullOrEmpty(text) ? "" : " (" + text + ")")}"
                        + (condition == "not-authorized" ? " — wrong password or unknown account" : ""));
                default:
                    throw new XmppProtocolException($"unexpected <{e.Name}/> during SASL");
            }
        }
    }

    private static string DecodeBase64(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.Length == 0 || trimmed == "=") return "";
        var buffer = new byte[trimmed.Length];
        if (!Convert.TryFromBase64String(trimmed, buffer, out var n)) throw new XmppProtocolException("SASL data is not base64");
        return Encoding.UTF8.GetString(buffer, 0, n);
    }

    private async Task BindAsync(XmppElement features, CancellationToken ct)
    {
        if (features.Child("bind", BindNamespace) is null) throw new XmppProtocolException("the server does not offer resource binding");
        var resource = _options.Resource ?? "overlay-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        await SendAsync($"<iq type='set' id='bind-1'><bind xmlns='{BindNamespace}'><resource>{XmppElement.Escape(resource)}</resource></bind></iq>", ct).ConfigureAwait(false);
        var result = await ReadElementAsync(ct).ConfigureAwait(false);
        if (result.Name != "iq" || result.Attribute("id") != "bind-1") throw new XmppProtocolException($"unexpected <{result.Name}/> while binding");
        if (result.Attribute("type") != "result")
        {
            var condition = result.Child("error", ClientNamespace)?.FirstChild(StanzaErrorNamespace)?.Name ?? "unknown";
            throw new XmppProtocolException($"resource binding failed: {condition}");
        }
        var jid = result.Child("bind", BindNamespace)?.Child("jid", BindNamespace)?.Text.Trim();
        if (string.IsNullOrEmpty(jid) || !jid.Contains('/', StringComparison.Ordinal)) throw new XmppProtocolException("resource binding returned no full JID");
        BoundJid = jid;

        // RFC 3921 session establishment, still required by some servers unless marked optional (RFC 6121 appendix E).
        var session = features.Child("session", SessionNamespace);
        if (session is not null && session.Child("optional", SessionNamespace) is null)
        {
            await SendAsync($"<iq type='set' id='session-1'><session xmlns='{SessionNamespace}'/></iq>", ct).ConfigureAwait(false);
            var s = await ReadElementAsync(ct).ConfigureAwait(false);
            if (s.Name != "iq" || s.Attribute("type") != "result") throw new XmppProtocolException("session establishment failed");
        }
    }

    /// <summary>Reads the next top-level element; a stream error or the end of the stream is an exception.</summary>
    public async Task<XmppElement> ReadElementAsync(CancellationToken ct)
    {
        var (token, element) = await ReadAsync(ct).ConfigureAwait(false);
        if (token == XmppToken.StreamEnd) throw new XmppProtocolException("the server closed the stream");
        if (token != XmppToken.Element) throw new XmppProtocolException("the server restarted the stream unexpectedly");
        if (element!.Name == "error" && element.Namespace == XmppStreamParser.StreamNamespace) throw StreamError(element);
        return element;
    }

    private static XmppStreamErrorException StreamError(XmppElement e)
    {
        const string ns = "urn:ietf:params:xml:ns:xmpp-streams";
        var condition = e.Children.FirstOrDefault(c => c.Namespace == ns && c.Name != "text")?.Name ?? "undefined-condition";
        var text = e.Child("text", ns)?.Text;
        return new XmppStreamErrorException(condition, $"stream error from server: {condition}{(string.IsNullOrEmpty(text) ? "" : " (" + text + ")")}");
    }

    /// <summary>Reads the next item of the stream, with the per-stanza size limit.</summary>
    public async Task<(XmppToken Token, XmppElement? Element)> ReadAsync(CancellationToken ct)
    {
        var reader = _reader ?? throw new ObjectDisposedException(nameof(XmppConnection));
        while (true)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            var token = ParseFront(buffer, out var consumed, out var element, out var error, out var windowFull);
            switch (token)
            {
                case XmppToken.Error:
                    reader.AdvanceTo(buffer.Start, buffer.End);
                    throw new XmppProtocolException($"malformed or prohibited XML from the server: {error}");
                case XmppToken.NeedMore:
                    if (windowFull)
                    {
                        reader.AdvanceTo(buffer.Start, buffer.End);
                        throw new XmppProtocolException($"a stanza from the server exceeds the limit of {_options.MaxStanzaBytes} bytes");
                    }
                    if (result.IsCompleted)
                    {
                        reader.AdvanceTo(buffer.Start, buffer.End);
                        throw new XmppProtocolException("the server closed the connection" + (buffer.Length > consumed ? " in the middle of a stanza" : ""));
                    }
                    reader.AdvanceTo(buffer.GetPosition(consumed), buffer.End);
                    continue;
                default:
                    reader.AdvanceTo(buffer.GetPosition(consumed));
                    return (token, element);
            }
        }
    }

    private XmppToken ParseFront(in ReadOnlySequence<byte> buffer, out int consumed, out XmppElement? element, out string? error, out bool windowFull)
    {
        var limit = _options.MaxStanzaBytes;
        var window = buffer.Length > limit ? buffer.Slice(0, limit) : buffer;
        windowFull = window.Length >= limit;
        return _scanner.Next(_parser, window, out consumed, out element, out error);
    }

    public async Task SendAsync(string xml, CancellationToken ct)
    {
        var stream = _stream ?? throw new ObjectDisposedException(nameof(XmppConnection));
        var bytes = Encoding.UTF8.GetBytes(xml);
        await _writeLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await stream.WriteAsync(bytes, ct).ConfigureAwait(false);
            await stream.FlushAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Closes the stream politely when possible (RFC 6120 §4.4), then TLS (close_notify: without it the server sees a
    /// truncated session), then the socket.
    /// </summary>
    public async Task CloseAsync(string? finalStanza = null)
    {
        if (Volatile.Read(ref _disposed) != 0 || _stream is null) return;
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await SendAsync((finalStanza ?? "") + "</stream:stream>", cts.Token).ConfigureAwait(false);
            if (_stream is SslStream ssl)
            {
                await _writeLock.WaitAsync(cts.Token).ConfigureAwait(false);
                try
                {
                    await ssl.ShutdownAsync().WaitAsync(cts.Token).ConfigureAwait(false);
                }
                finally
                {
                    _writeLock.Release();
                }
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or SocketException)
        {
            _logger.LogDebug("closing the stream politely failed: {Message}", ex.Message);
        }
        await DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            _socket?.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        _socket?.Dispose();
        if (_stream is not null)
        {
            try
            {
                await _stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (IOException) { }
        }
    }
}
