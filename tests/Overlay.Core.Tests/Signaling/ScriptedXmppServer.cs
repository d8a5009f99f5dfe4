using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Overlay.Signaling.Xmpp;

namespace Overlay.Core.Tests.Signaling;

/// <summary>
/// A raw TCP server on loopback that plays a script against the XMPP client: well-behaved up to a point,
/// then hostile. Each accepted connection runs the script; the server counts connections.
/// </summary>
internal sealed class ScriptedXmppServer : IAsyncDisposable
{
    public const string Domain = "overlay.test";
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Func<ScriptedPeer, int, Task> _script;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _sessions = [];
    private readonly Task _acceptLoop;
    private int _connections;

    public ScriptedXmppServer(Func<ScriptedPeer, int, Task> script)
    {
        _script = script;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={Domain}", key, HashAlgorithmName.SHA256);
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        Certificate = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
        Pin = Convert.ToHexString(SHA256.HashData(Certificate.RawData));
        _listener.Start();
        _acceptLoop = AcceptLoopAsync();
    }

    public X509Certificate2 Certificate { get; }

    public string Pin { get; }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Errors the scripts hit (a script ends when the client hangs up on it).</summary>
    public List<Exception> ScriptErrors { get; } = [];

    public XmppChannelOptions ClientOptions(string nodeId) => new()
    {
        Jid = $"node1@{Domain}",
        Password = "secret",
        Host = "127.0.0.1",
        Port = Port,
        PinnedCertificateSha256 = Pin,
        NodeId = nodeId,
        Overlays = ["ovl1"],
        ConnectTimeout = TimeSpan.FromSeconds(10),
        ReconnectMinDelay = TimeSpan.FromMilliseconds(100),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
    };

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            var n = Interlocked.Increment(ref _connections);
            lock (_sessions) _sessions.Add(RunAsync(client, n));
        }
    }

    private async Task RunAsync(TcpClient client, int n)
    {
        using (client)
        {
            var peer = new ScriptedPeer(client.GetStream(), Certificate, _stop.Token);
            try
            {
                await _script(peer, n);
            }
            catch (Exception ex)
            {
                lock (ScriptErrors) ScriptErrors.Add(ex);
            }
            finally
            {
                await peer.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _acceptLoop;
        Task[] sessions;
        lock (_sessions) sessions = [.. _sessions];
        await Task.WhenAll(sessions).WaitAsync(TimeSpan.FromSeconds(10));
        Certificate.Dispose();
        _stop.Dispose();
    }
}

/// <summary>The server side of one scripted connection.</summary>
internal sealed class ScriptedPeer(Stream stream, X509Certificate2 certificate, CancellationToken ct) : IAsyncDisposable
{
    private const string Header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='overlay.test' id='s1' version='1.0'>";
    private readonly XmppStreamParser _parser = new();
    private readonly byte[] _buffer = new byte[256 * 1024];
    private Stream _stream = stream;
    private int _length;

    public CancellationToken Cancellation => ct;

    /// <summary>Reads the client's next item (stream header or element).</summary>
    public async Task<XmppElement> ReadAsync()
    {
        while (true)
        {
            var token = _parser.Next(_buffer.AsSpan(0, _length), out var consumed, out var element, out var error);
            if (token == XmppToken.Error) throw new InvalidDataException("client sent bad XML: " + error);
            Buffer.BlockCopy(_buffer, consumed, _buffer, 0, _length - consumed);
            _length -= consumed;
            if (token is XmppToken.Element or XmppToken.StreamHeader) return element!;
            if (token == XmppToken.StreamEnd) throw new EndOfStreamException("client closed the stream");
            var n = await _stream.ReadAsync(_buffer.AsMemory(_length), ct);
            if (n == 0) throw new EndOfStreamException("client closed the connection");
            _length += n;
        }
    }

    public async Task SendAsync(string xml)
    {
        await _stream.WriteAsync(Encoding.UTF8.GetBytes(xml), ct);
        await _stream.FlushAsync(ct);
    }

    public Task SendAsync(byte[] bytes) => _stream.WriteAsync(bytes, ct).AsTask();

    /// <summary>Reads the client's stream header and answers with ours plus <paramref name="features"/>.</summary>
    public async Task OpenAsync(string features)
    {
        _parser.Reset();
        var header = await ReadAsync();
        if (header.Name != "stream") throw new InvalidDataException("expected a stream header");
        await SendAsync(Header + "<stream:features>" + features + "</stream:features>");
    }

    /// <summary>The client certificate presented in the TLS handshake, if the script asked for one.</summary>
    public X509Certificate? ClientCertificate { get; private set; }

    /// <summary>
    /// Plays a correct server up to an established session (STARTTLS, PLAIN or EXTERNAL, bind, roster),
    /// the initial presence read. <paramref name="beforeRoster"/> may send stanzas between the client's roster request
    /// (given its id) and the server's answer.
    /// </summary>
    /// <remarks>
    /// With <paramref name="tls12"/> the server offers TLS 1.2 only, whose record headers tell alerts from data (TLS 1.3
    /// hides both as application data), and <see cref="ClientRecordTypes"/> logs the client's records.
    /// </remarks>
    public async Task<string> EstablishAsync(bool external = false, Func<string, Task>? beforeRoster = null, bool tls12 = false)
    {
        await OpenAsync("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
        await ReadAsync(); // <starttls/>
        await SendAsync("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        var records = tls12 ? new TlsRecordLog(_stream) : null;
        var ssl = new SslStream(records ?? _stream);
        await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificate = certificate,
            ClientCertificateRequired = external,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            EnabledSslProtocols = tls12 ? SslProtocols.Tls12 : SslProtocols.None,
        }, ct);
        _records = records;
        ClientCertificate = ssl.RemoteCertificate;
        _stream = ssl;
        _length = 0;
        await OpenAsync("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + (external ? "<mechanism>EXTERNAL</mechanism>" : "") + "<mechanism>PLAIN</mechanism></mechanisms>");
        var auth = await ReadAsync();
        if (external)
        {
            if (auth.Attribute("mechanism") != "EXTERNAL" || auth.Text != "=") throw new InvalidDataException($"bad EXTERNAL: {auth}");
        }
        else
        {
            var plain = Encoding.UTF8.GetString(Convert.FromBase64String(auth.Text));
            if (auth.Attribute("mechanism") != "PLAIN" || plain != "\0node1\0secret") throw new InvalidDataException("bad PLAIN: " + plain);
        }
        await SendAsync("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        await OpenAsync("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
        var bind = await ReadAsync();
        var jid = "node1@overlay.test/scripted";
        await SendAsync($"<iq type='result' id='{bind.Attribute("id")}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{jid}</jid></bind></iq>");
        var roster = await ReadAsync();
        if (beforeRoster is not null) await beforeRoster(roster.Attribute("id") ?? "");
        await SendAsync($"<iq type='result' id='{roster.Attribute("id")}'><query xmlns='jabber:iq:roster'/></iq>");
        var presence = await ReadAsync();
        if (presence.Name != "presence") throw new InvalidDataException("expected the initial presence");
        return jid;
    }

    private TlsRecordLog? _records;

    /// <summary>The content type of each TLS record the client sent so far (20 change cipher spec, 21 alert, 22 handshake, 23 data).</summary>
    public IReadOnlyList<byte> ClientRecordTypes => _records?.Types ?? [];

    /// <summary>Reads and discards what the client sends until it closes the connection (after its stream's end).</summary>
    public async Task DrainAsync()
    {
        try
        {
            while (await _stream.ReadAsync(_buffer, ct) > 0) { }
        }
        catch (IOException) { } // a close without TLS's own
    }

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}

/// <summary>Passes a TLS connection's bytes through and notes the content type of each record read (RFC 5246 §6.2.1).</summary>
internal sealed class TlsRecordLog(Stream inner) : Stream
{
    private const int HeaderLength = 5;
    private readonly byte[] _header = new byte[HeaderLength];
    private readonly List<byte> _types = [];
    private int _headerFill, _bodyLeft;

    public IReadOnlyList<byte> Types
    {
        get
        {
            lock (_types) return [.. _types];
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        Scan(buffer.Span[..n]);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var n = inner.Read(buffer, offset, count);
        Scan(buffer.AsSpan(offset, n));
        return n;
    }

    private void Scan(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            if (_bodyLeft > 0)
            {
                var skip = Math.Min(_bodyLeft, bytes.Length);
                _bodyLeft -= skip;
                bytes = bytes[skip..];
                continue;
            }
            var take = Math.Min(HeaderLength - _headerFill, bytes.Length);
            bytes[..take].CopyTo(_header.AsSpan(_headerFill));
            _headerFill += take;
            bytes = bytes[take..];
            if (_headerFill < HeaderLength) return;
            _headerFill = 0;
            _bodyLeft = (_header[3] << 8) | _header[4];
            lock (_types) _types.Add(_header[0]);
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public override void Flush() => inner.Flush();
    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
