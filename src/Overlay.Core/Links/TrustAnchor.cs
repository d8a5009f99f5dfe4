using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Overlay.Links;

/// <summary>
/// An overlay's own trust, independent of the signaling server: the CA certificates whose (direct or intermediate-signed)
/// certificates it accepts, and the public keys it accepts whatever signed them. The DTLS handshake checks the peer against
/// it after the signalled fingerprint, so a server operator who forges fingerprints and candidates still cannot bring in a
/// key of their own. Keys are named by <c>sha256:</c> and the hex SHA-256 of their SubjectPublicKeyInfo; a node ID is the
/// first 32 hex characters of that.
/// </summary>
internal sealed class TrustAnchor : IDisposable
{
    /// <summary>Certificates a peer may present in its chain, beyond its own (a longer chain is refused).</summary>
    internal const int MaxIntermediates = 4;

    private const string PinPrefix = "sha256:";

    private readonly X509Certificate2Collection _authorities;
    private readonly HashSet<string> _keys;

    private TrustAnchor(X509Certificate2Collection authorities, HashSet<string> keys)
    {
        _authorities = authorities;
        _keys = keys;
    }

    /// <summary>CA certificates trusted.</summary>
    public int Authorities => _authorities.Count;

    /// <summary>Public keys trusted by pin.</summary>
    public int Keys => _keys.Count;

    /// <summary>
    /// Reads an overlay's <c>TrustedCertificates</c>: each entry is a PEM file (a certificate marked as a CA trusts what it
    /// signs; any other certificate trusts its key) or a key pin <c>sha256:&lt;64 hex&gt;</c>. Null when none are named.
    /// </summary>
    /// <exception cref="OverlayConfigurationException">An entry cannot be read or holds no certificate; names the entry.</exception>
    public static TrustAnchor? Load(IReadOnlyList<string> entries, string key)
    {
        if (entries.Count == 0) return null;
        var authorities = new X509Certificate2Collection();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            var entryKey = $"{key}[{i}]";
            if (entry.StartsWith(PinPrefix, StringComparison.OrdinalIgnoreCase))
            {
                var hex = entry[PinPrefix.Length..];
                if (hex.Length != 64 || !hex.All(char.IsAsciiHexDigit))
                    throw new OverlayConfigurationException(entryKey, $"'{entry}' is not a key pin (sha256: and 64 hex characters)");
                keys.Add(PinPrefix + hex.ToLowerInvariant());
                continue;
            }
            var certificates = new X509Certificate2Collection();
            try
            {
                certificates.ImportFromPemFile(entry);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
            {
                throw new OverlayConfigurationException(entryKey, $"cannot read certificates from '{entry}': {e.Message}", e);
            }
            if (certificates.Count == 0)
                throw new OverlayConfigurationException(entryKey, $"'{entry}' holds no PEM certificate");
            foreach (var certificate in certificates)
            {
                if (IsAuthority(certificate)) authorities.Add(certificate);
                else
                {
                    keys.Add(KeyOf(certificate));
                    certificate.Dispose();
                }
            }
        }
        return new TrustAnchor(authorities, keys);
    }

    /// <summary>The key's name: <c>sha256:</c> and the hex SHA-256 of its SubjectPublicKeyInfo.</summary>
    public static string KeyOf(X509Certificate2 certificate)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo(), hash);
        return PinPrefix + Convert.ToHexStringLower(hash);
    }

    /// <summary>
    /// Null when <paramref name="certificate"/> is trusted: its key is pinned, or it chains (through
    /// <paramref name="intermediates"/>, which the peer sent after it) to a trusted CA and is valid at <paramref name="now"/>.
    /// Otherwise why not, naming the key.
    /// </summary>
    public string? Refuse(X509Certificate2 certificate, IReadOnlyList<X509Certificate2> intermediates, DateTimeOffset now)
    {
        var keyName = KeyOf(certificate);
        if (_keys.Contains(keyName)) return null;
        if (_authorities.Count == 0) return $"key {keyName} is not among the overlay's trusted keys";
        if (intermediates.Count > MaxIntermediates)
            return $"key {keyName} came with {intermediates.Count} chain certificates, more than {MaxIntermediates}";
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_authorities);
        foreach (var intermediate in intermediates) chain.ChainPolicy.ExtraStore.Add(intermediate);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = now.UtcDateTime;
        chain.ChainPolicy.VerificationTimeIgnored = false;
        if (chain.Build(certificate)) return null;
        var problems = chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct();
        return $"key {keyName} ({certificate.Subject}) is not certified by the overlay's trusted CAs: {string.Join("; ", problems)}";
    }

    private static bool IsAuthority(X509Certificate2 certificate) =>
        certificate.Extensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var authority in _authorities) authority.Dispose();
    }
}
