using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Overlay.Links;

/// <summary>
/// A node's long-lived identity: a self-signed ECDSA P-256 certificate and its key. Peers learn its
/// SHA-256 fingerprint through signaling and the DTLS handshake proves possession of the key. The node's ID is
/// derived from the key (<see cref="NodeId"/>), so no one can hold another node's ID without its key.
/// </summary>
public sealed class NodeIdentity : IDisposable
{
    private NodeIdentity(X509Certificate2 certificate, ECDsa key, IReadOnlyList<X509Certificate2>? chain = null)
    {
        Certificate = certificate;
        Key = key;
        Chain = chain ?? [];
        Fingerprint = CertificateFingerprint.Of(certificate.RawData);
        NodeId = NodeIdOf(certificate);
    }

    /// <summary>
    /// The node ID this identity owns: the first 16 bytes of SHA-256 over the certificate's SubjectPublicKeyInfo, as
    /// 32 lower-case hex characters (as ZeroTier derives an address from its identity). A renewed certificate for the
    /// same key keeps it.
    /// </summary>
    public string NodeId { get; }

    /// <summary>The node ID that <paramref name="certificate"/>'s key owns.</summary>
    internal static string NodeIdOf(X509Certificate2 certificate) => TrustAnchor.KeyOf(certificate).Substring("sha256:".Length, 32);

    /// <summary>The certificate (DER in <see cref="X509Certificate.GetRawCertData"/>).</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>
    /// The certificates that follow <see cref="Certificate"/> in its file (intermediate CAs), sent with it in the handshake
    /// so that peers whose overlay trusts a root CA can build the chain.
    /// </summary>
    internal IReadOnlyList<X509Certificate2> Chain { get; }

    /// <summary>The private key.</summary>
    public ECDsa Key { get; }

    /// <summary>SHA-256 fingerprint of the certificate, as sent through signaling.</summary>
    public CertificateFingerprint Fingerprint { get; }

    /// <summary>Creates a fresh identity that lives in memory only.</summary>
    public static NodeIdentity CreateEphemeral(string subject = "overlay-node")
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={subject}", key, HashAlgorithmName.SHA256);
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(10));
        return new NodeIdentity(X509CertificateLoader.LoadCertificate(certificate.RawData), key);
    }

    /// <summary>Uses a certificate the host supplies; it must carry its ECDSA private key.</summary>
    public static NodeIdentity FromCertificate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var key = certificate.GetECDsaPrivateKey()
            ?? throw new ArgumentException("the certificate must be ECDSA and carry its private key", nameof(certificate));
        return new NodeIdentity(X509CertificateLoader.LoadCertificate(certificate.RawData), key);
    }

    /// <summary>Loads the identity from a PEM file holding the certificate and its PKCS#8 key, creating the file on first use.</summary>
    public static NodeIdentity LoadOrCreate(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            var pem = File.ReadAllText(path);
            var key = ECDsa.Create();
            try
            {
                key.ImportFromPem(pem);
                // The node's own certificate is the one its key belongs to; any others are its chain, in file order.
                var certificates = new X509Certificate2Collection();
                certificates.ImportFromPem(pem);
                var own = key.ExportSubjectPublicKeyInfo();
                X509Certificate2? leaf = null;
                var chain = new List<X509Certificate2>();
                foreach (var certificate in certificates)
                {
                    if (leaf is null && certificate.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(own)) leaf = certificate;
                    else chain.Add(certificate);
                }
                if (leaf is null)
                    throw new InvalidDataException(certificates.Count == 0 ? $"{path}: no certificate" : $"{path}: the key does not belong to any certificate in the file");
                if (leaf.GetECDsaPublicKey() is not { } publicKey) throw new InvalidDataException($"{path}: the certificate is not ECDSA");
                publicKey.Dispose();
                return new NodeIdentity(leaf, key, chain);
            }
            catch (Exception e) when (e is CryptographicException or ArgumentException)
            {
                key.Dispose();
                throw new InvalidDataException($"{path}: not a PEM certificate with its ECDSA key: {e.Message}", e);
            }
        }
        var identity = CreateEphemeral();
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        var text = identity.Certificate.ExportCertificatePem() + "\n" + identity.Key.ExportPkcs8PrivateKeyPem() + "\n";
        // The key is a secret: readable by the owner only (the file is created with that mode, never widened).
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var file = new FileStream(path, options))
        using (var writer = new StreamWriter(file))
            writer.Write(text);
        return identity;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var certificate in Chain) certificate.Dispose();
        Certificate.Dispose();
        Key.Dispose();
    }
}

/// <summary>A SHA-256 certificate fingerprint, written "AB:CD:…" as in SDP (RFC 8122).</summary>
public readonly struct CertificateFingerprint : IEquatable<CertificateFingerprint>
{
    private readonly byte[]? _hash;

    private CertificateFingerprint(byte[] hash) => _hash = hash;

    /// <summary>The fingerprint of a DER certificate.</summary>
    public static CertificateFingerprint Of(ReadOnlySpan<byte> der) => new(SHA256.HashData(der));

    /// <summary>Parses 32 hex bytes, with or without colons; false on anything else.</summary>
    public static bool TryParse(string? text, out CertificateFingerprint fingerprint)
    {
        fingerprint = default;
        if (text is null) return false;
        var hex = text.Replace(":", "", StringComparison.Ordinal);
        if (hex.Length != 64) return false;
        try
        {
            fingerprint = new CertificateFingerprint(Convert.FromHexString(hex));
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>True when both fingerprints are set and equal (compared in constant time).</summary>
    public bool Equals(CertificateFingerprint other) =>
        _hash is not null && other._hash is not null && CryptographicOperations.FixedTimeEquals(_hash, other._hash);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is CertificateFingerprint other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => _hash is null ? 0 : BitConverter.ToInt32(_hash);

    /// <inheritdoc />
    public override string ToString() => _hash is null ? "" : Convert.ToHexString(_hash).Chunk(2).Aggregate("", (s, c) => s.Length == 0 ? new string(c) : s + ":" + new string(c));

    /// <summary>Equality.</summary>
    public static bool operator ==(CertificateFingerprint a, CertificateFingerprint b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(CertificateFingerprint a, CertificateFingerprint b) => !a.Equals(b);
}
