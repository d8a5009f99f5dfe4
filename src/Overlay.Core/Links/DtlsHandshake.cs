using System.Collections.Concurrent;
using X509Certificate2 = System.Security.Cryptography.X509Certificates.X509Certificate2;
using X509CertificateLoader = System.Security.Cryptography.X509Certificates.X509CertificateLoader;
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Security;
using Org.BouncyCastle.Tls;
using Org.BouncyCastle.Tls.Crypto;
using Org.BouncyCastle.Tls.Crypto.Impl.BC;
using Overlay.Transport;

namespace Overlay.Links;

/// <summary>The keys a link seals and opens frames with, for one key epoch.</summary>
/// <param name="SendKey">AES-128 key for what this side sends.</param>
/// <param name="SendSalt">4-byte nonce salt for what this side sends.</param>
/// <param name="ReceiveKey">AES-128 key for what the peer sends.</param>
/// <param name="ReceiveSalt">4-byte nonce salt for what the peer sends.</param>
internal sealed record LinkKeys(byte[] SendKey, byte[] SendSalt, byte[] ReceiveKey, byte[] ReceiveSalt);

/// <summary>
/// The secret exported from one DTLS session (RFC 5705), from which the keys of every epoch are expanded
/// with HKDF (RFC 5869): rotating to a new epoch needs no new handshake, and epochs never share a key.
/// </summary>
internal sealed class LinkSecret(byte[] master, bool client)
{
    private const int KeyLength = 16, SaltLength = 4;

    public bool IsClient => client;

    /// <summary>The keys of <paramref name="epoch"/> (epochs below 256 use the info strings of the one-byte epochs before).</summary>
    public LinkKeys ForEpoch(uint epoch)
    {
        Span<byte> material = stackalloc byte[2 * (KeyLength + SaltLength)];
        System.Security.Cryptography.HKDF.Expand(System.Security.Cryptography.HashAlgorithmName.SHA256, master, material,
            System.Text.Encoding.ASCII.GetBytes($"overlay link keys epoch {epoch}"));
        var c2sKey = material[..KeyLength].ToArray();
        var s2cKey = material[KeyLength..(2 * KeyLength)].ToArray();
        var c2sSalt = material[(2 * KeyLength)..(2 * KeyLength + SaltLength)].ToArray();
        var s2cSalt = material[(2 * KeyLength + SaltLength)..].ToArray();
        return client ? new LinkKeys(c2sKey, c2sSalt, s2cKey, s2cSalt) : new LinkKeys(s2cKey, s2cSalt, c2sKey, c2sSalt);
    }
}

/// <summary>The peer presented a certificate other than the one signalled, or none.</summary>
internal sealed class PeerAuthenticationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PeerAuthenticationException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public PeerAuthenticationException() : this("peer authentication failed") { }

    /// <summary>Creates the exception.</summary>
    public PeerAuthenticationException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// A DTLS 1.2 handshake (RFC 6347, BouncyCastle) over an ICE path, used only to authenticate the peer
/// and agree on keys: both sides present their ECDSA certificates, each checks the other's against the
/// fingerprint received through signaling, and frame keys are exported (RFC 5705). Data never travels
/// through DTLS records; .NET's AES-GCM seals it (BouncyCastle's managed GCM is ~9× slower).
/// </summary>
internal static class DtlsHandshake
{
    private const string ExporterLabel = "EXPORTER-overlay-link-keys";
    private const int SecretLength = 32;

    /// <summary>
    /// Runs the handshake as DTLS client (ICE controlling) or server, and exports the frame keys. With
    /// <paramref name="expectedPeerNodeId"/>, the peer's key must also own that node ID (<see cref="NodeIdentity.NodeId"/>);
    /// with <paramref name="trust"/>, the overlay's trust anchor must accept the peer's certificate at <paramref name="now"/>.
    /// <paramref name="roundTrip"/>, the path's round trip as ICE measured it, sets the first retransmission timeout of a
    /// lost flight (<see cref="ResendMilliseconds"/>).
    /// </summary>
    public static async Task<LinkSecret> RunAsync(IDatagramChannel channel, bool client, NodeIdentity identity, CertificateFingerprint expectedPeer,
        TimeSpan timeout, CancellationToken cancellationToken, string? expectedPeerNodeId = null, TrustAnchor? trust = null, DateTimeOffset now = default,
        TimeSpan? roundTrip = null)
    {
        var check = new PeerCheck(expectedPeer, expectedPeerNodeId, trust, now, ResendMilliseconds(roundTrip));
        using var transport = new ChannelDatagramTransport(channel);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        await using var _ = cts.Token.Register(transport.Close).ConfigureAwait(false);
        var crypto = new BcTlsCrypto(new SecureRandom());
        // The node's certificate, then its chain, so that a peer whose overlay trusts a root CA can build the path to it.
        var certificate = new Certificate([new BcTlsCertificate(crypto, identity.Certificate.RawData),
            .. identity.Chain.Select(c => (TlsCertificate)new BcTlsCertificate(crypto, c.RawData))]);
        var key = (ECPrivateKeyParameters)PrivateKeyFactory.CreateKey(identity.Key.ExportPkcs8PrivateKey());
        try
        {
            // BouncyCastle's handshake blocks in Receive; on a thread of its own, so that a node setting up many links at
            // once does not starve the thread pool (which grows by about one thread a second).
            return await Task.Factory.StartNew(() =>
            {
                byte[] material;
                if (client)
                {
                    var peer = new Client(crypto, certificate, key, check);
                    var dtls = new DtlsClientProtocol().Connect(peer, transport);
                    material = peer.Export();
                    dtls.Close();
                }
                else
                {
                    var peer = new Server(crypto, certificate, key, check);
                    // No HelloVerifyRequest: the cookie proves that the client receives at its address (RFC 6347 §4.2.1),
                    // which ICE has proved already. This channel takes datagrams only from a remote address whose
                    // connectivity check carried the peer's signalled ICE password, so a spoofed ClientHello never reaches
                    // the server. One round trip less.
                    var dtls = new DtlsServerProtocol { VerifyRequests = false }.Accept(peer, transport);
                    material = peer.Export();
                    dtls.Close();
                }
                return new LinkSecret(material, client);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        }
        catch (TlsFatalAlert alert) when (alert.InnerException is PeerAuthenticationException refused)
        {
            throw refused;
        }
        catch (Exception e) when (e is TlsException or IOException or ObjectDisposedException)
        {
            if (cts.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                throw new TimeoutException($"DTLS handshake did not complete within {timeout.TotalSeconds:0.#} s", e);
            cancellationToken.ThrowIfCancellationRequested();
            throw new PeerAuthenticationException($"DTLS handshake failed: {e.Message}", e);
        }
    }

    /// <summary>
    /// What the peer must present: the signalled certificate, a key that owns the peer's node ID, and, where the overlay
    /// names a trust anchor, a certificate that the anchor accepts.
    /// </summary>
    private sealed record PeerCheck(CertificateFingerprint Fingerprint, string? NodeId, TrustAnchor? Trust, DateTimeOffset Now, int ResendMilliseconds = 1000);

    /// <summary>
    /// The first retransmission timeout of a handshake flight: RFC 6347 §4.2.4.1 recommends 1 s where nothing is known,
    /// but ICE has just measured the path's round trip. Four round trips and 100 ms for the peer's signing, from 150 ms
    /// to 1 s; BouncyCastle doubles it after each loss.
    /// </summary>
    internal static int ResendMilliseconds(TimeSpan? roundTrip) =>
        roundTrip is { } rtt && rtt > TimeSpan.Zero ? (int)Math.Clamp(4 * rtt.TotalMilliseconds + 100, 150, 1000) : 1000;

    /// <summary>
    /// One handshake of the node with itself over memory, so that the first real link does not wait for the handshake's
    /// code (BouncyCastle's elliptic curves, the certificate checks) to be compiled: on a loaded machine that took seconds.
    /// Errors are ignored; it is only a warm-up.
    /// </summary>
    public static async Task WarmUpAsync(NodeIdentity identity, CancellationToken cancellationToken)
    {
        try
        {
            var (a, b) = LoopbackChannel.Pair();
            var timeout = TimeSpan.FromSeconds(30);
            var server = RunAsync(b, client: false, identity, identity.Fingerprint, timeout, cancellationToken, identity.NodeId, roundTrip: TimeSpan.FromMilliseconds(100));
            var client = RunAsync(a, client: true, identity, identity.Fingerprint, timeout, cancellationToken, identity.NodeId, roundTrip: TimeSpan.FromMilliseconds(100));
            await Task.WhenAll(client, server).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // cancelled (the node stopped first) or failed: the first link compiles what is missing
        }
    }

    /// <summary>Two in-memory channels joined back to back (the warm-up's path).</summary>
    private sealed class LoopbackChannel : IDatagramChannel
    {
        private volatile IDatagramReceiver? _receiver;
        private LoopbackChannel _peer = null!;

        public static (LoopbackChannel A, LoopbackChannel B) Pair()
        {
            var a = new LoopbackChannel();
            var b = new LoopbackChannel { _peer = a };
            a._peer = b;
            return (a, b);
        }

        public int Headroom => 0;

        public bool TrySend(Span<byte> buffer, int payloadLength, DataPathBatch? batch = null)
        {
            _peer._receiver?.OnDatagram(buffer[..payloadLength], batch);
            return true;
        }

        public void SetReceiver(IDatagramReceiver? receiver) => _receiver = receiver;
    }

    private static void Verify(Certificate? presented, PeerCheck expected, string who)
    {
        if (presented is null || presented.IsEmpty)
            throw new TlsFatalAlert(AlertDescription.bad_certificate, new PeerAuthenticationException($"the {who} presented no certificate"));
        var der = presented.GetCertificateAt(0).GetEncoded();
        var actual = CertificateFingerprint.Of(der);
        if (actual != expected.Fingerprint)
            throw new TlsFatalAlert(AlertDescription.bad_certificate,
                new PeerAuthenticationException($"the {who}'s certificate {actual} is not the one signalled ({expected.Fingerprint})"));
        if (expected.NodeId is null && expected.Trust is null) return;
        using var x509 = X509CertificateLoader.LoadCertificate(der);
        if (expected.NodeId is not null && NodeIdentity.NodeIdOf(x509) is var owned && owned != expected.NodeId)
            throw new TlsFatalAlert(AlertDescription.bad_certificate,
                new PeerAuthenticationException($"the {who}'s key owns node ID {owned}, not {expected.NodeId}, the one it claims"));
        if (expected.Trust is not { } trust) return;
        var chain = new List<X509Certificate2>();
        try
        {
            for (var i = 1; i < presented.Length && i <= TrustAnchor.MaxIntermediates + 1; i++)
                chain.Add(X509CertificateLoader.LoadCertificate(presented.GetCertificateAt(i).GetEncoded()));
            if (trust.Refuse(x509, chain, expected.Now) is { } refusal)
                throw new TlsFatalAlert(AlertDescription.bad_certificate, new PeerAuthenticationException($"the {who} is not trusted by the overlay: {refusal}"));
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new TlsFatalAlert(AlertDescription.bad_certificate, new PeerAuthenticationException($"the {who}'s certificate chain cannot be read: {e.Message}"));
        }
        finally
        {
            foreach (var c in chain) c.Dispose();
        }
    }

    private static TlsCredentialedSigner Signer(TlsContext context, BcTlsCrypto crypto, Certificate certificate, AsymmetricKeyParameter key) =>
        new BcDefaultTlsCredentialedSigner(new TlsCryptoParameters(context), crypto, key, certificate,
            new SignatureAndHashAlgorithm(HashAlgorithm.sha256, SignatureAlgorithm.ecdsa));

    private static readonly int[] Suites = [CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];

    private sealed class Client(BcTlsCrypto crypto, Certificate certificate, AsymmetricKeyParameter key, PeerCheck expected)
        : DefaultTlsClient(crypto)
    {
        private byte[]? _material;

        public byte[] Export() => _material ?? throw new InvalidOperationException("the handshake did not complete");

        // BouncyCastle allows the RFC 5705 exporter only here, while the session's secrets are at hand.
        public override void NotifyHandshakeComplete()
        {
            base.NotifyHandshakeComplete();
            _material = m_context.ExportKeyingMaterial(ExporterLabel, null, SecretLength);
        }

        protected override ProtocolVersion[] GetSupportedVersions() => ProtocolVersion.DTLSv12.Only();

        protected override int[] GetSupportedCipherSuites() => Suites;

        public override int GetHandshakeResendTimeMillis() => expected.ResendMilliseconds;

        public override TlsAuthentication GetAuthentication() => new Authentication(this);

        private sealed class Authentication(Client owner) : TlsAuthentication
        {
            public void NotifyServerCertificate(TlsServerCertificate serverCertificate) => Verify(serverCertificate.Certificate, owner.ExpectedPeer, "server");

            public TlsCredentials GetClientCredentials(CertificateRequest certificateRequest) => Signer(owner.m_context, owner.OwnCrypto, owner.OwnCertificate, owner.OwnKey);
        }

        private PeerCheck ExpectedPeer => expected;
        private BcTlsCrypto OwnCrypto => crypto;
        private Certificate OwnCertificate => certificate;
        private AsymmetricKeyParameter OwnKey => key;
    }

    private sealed class Server(BcTlsCrypto crypto, Certificate certificate, AsymmetricKeyParameter key, PeerCheck expected)
        : DefaultTlsServer(crypto)
    {
        private byte[]? _material;

        public byte[] Export() => _material ?? throw new InvalidOperationException("the handshake did not complete");

        // BouncyCastle allows the RFC 5705 exporter only here, while the session's secrets are at hand.
        public override void NotifyHandshakeComplete()
        {
            base.NotifyHandshakeComplete();
            _material = m_context.ExportKeyingMaterial(ExporterLabel, null, SecretLength);
        }

        protected override ProtocolVersion[] GetSupportedVersions() => ProtocolVersion.DTLSv12.Only();

        protected override int[] GetSupportedCipherSuites() => Suites;

        protected override TlsCredentialedSigner GetECDsaSignerCredentials() => Signer(m_context, crypto, certificate, key);

        public override int GetHandshakeResendTimeMillis() => expected.ResendMilliseconds;

        public override CertificateRequest GetCertificateRequest() =>
            new([ClientCertificateType.ecdsa_sign], [new SignatureAndHashAlgorithm(HashAlgorithm.sha256, SignatureAlgorithm.ecdsa)], null);

        public override void NotifyClientCertificate(Certificate clientCertificate) => Verify(clientCertificate, expected, "client");
    }

    /// <summary>BouncyCastle's blocking datagram interface over an <see cref="IDatagramChannel"/>; handshake packets are copied into a queue.</summary>
    private sealed class ChannelDatagramTransport : DatagramTransport, IDatagramReceiver, IDisposable
    {
        private const int Mtu = 1400;
        private readonly IDatagramChannel _channel;
        private readonly BlockingCollection<byte[]> _received = new(boundedCapacity: 64);
        private readonly byte[] _send;
        private volatile bool _closed;

        public ChannelDatagramTransport(IDatagramChannel channel)
        {
            _channel = channel;
            _send = new byte[channel.Headroom + Mtu];
            channel.SetReceiver(this);
        }

        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch)
        {
            if (datagram.Length == 0 || datagram[0] is < 20 or > 63 || _closed) return;
            try
            {
                _received.TryAdd(datagram.ToArray());
            }
            catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
            {
                // The handshake closed between the check and the add (a late retransmission): the datagram has no reader.
            }
        }

        public int GetReceiveLimit() => Mtu;

        public int GetSendLimit() => Mtu;

        public int Receive(byte[] buf, int off, int len, int waitMillis) => Receive(buf.AsSpan(off, len), waitMillis);

        public int Receive(Span<byte> buffer, int waitMillis)
        {
            if (_closed) throw new ObjectDisposedException(nameof(ChannelDatagramTransport));
            try
            {
                if (!_received.TryTake(out var datagram, waitMillis)) return _closed ? throw new ObjectDisposedException(nameof(ChannelDatagramTransport)) : -1;
                var n = Math.Min(datagram.Length, buffer.Length);
                datagram.AsSpan(0, n).CopyTo(buffer);
                return n;
            }
            catch (InvalidOperationException) { throw new ObjectDisposedException(nameof(ChannelDatagramTransport)); }
        }

        public void Send(byte[] buf, int off, int len) => Send(buf.AsSpan(off, len));

        public void Send(ReadOnlySpan<byte> buffer)
        {
            if (_closed) throw new ObjectDisposedException(nameof(ChannelDatagramTransport));
            lock (_send)
            {
                buffer.CopyTo(_send.AsSpan(_channel.Headroom));
                _channel.TrySend(_send, buffer.Length);
            }
        }

        public void Close()
        {
            _closed = true;
            _received.CompleteAdding();
        }

        public void Dispose()
        {
            Close();
            _channel.SetReceiver(null);
            _received.Dispose();
        }
    }
}
