using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Overlay.Signaling.Xmpp;

/// <summary>
/// Decides whether the XMPP server's TLS certificate is trusted: exactly the pinned certificate when a pin
/// is configured; otherwise a chain to the configured CA file (custom root trust) or to the system store,
/// issued for the XMPP domain. Failures carry a reason for <see cref="XmppCertificateException"/>.
/// </summary>
internal static class ServerCertificateValidator
{
    public static bool Validate(XmppChannelOptions options, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, out string? error)
    {
        error = null;
        if (certificate is null)
        {
            error = "the server sent no certificate";
            return false;
        }
        var pin = options.NormalizedPin;
        if (pin is not null)
        {
            var actual = Convert.ToHexStringLower(SHA256.HashData(certificate.GetRawCertData()));
            if (actual == pin) return true;
            error = $"certificate SHA-256 {actual} does not match the pinned {pin}";
            return false;
        }
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            error = $"the certificate ({certificate.Subject}) is not issued for {options.Domain}";
            return false;
        }
        if (options.TrustedCaCertificatePath is not null)
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(options.TrustedCaCertificatePath);
            if (ChainsTo(certificate, chain, roots, out var problem)) return true;
            error = $"the chain of {certificate.Subject} does not lead to the CA in {options.TrustedCaCertificatePath}: {problem}";
            return false;
        }
        if (errors == SslPolicyErrors.None) return true;
        error = $"{errors} ({certificate.Subject}, issuer {certificate.Issuer}){(chain is null ? "" : ": " + Describe(chain))}";
        return false;
    }

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="roots"/> (and no other root); else the chain's problems.</summary>
    internal static bool ChainsTo(X509Certificate certificate, X509Chain? chain, X509Certificate2Collection roots, out string? problem)
    {
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(roots);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null) custom.ChainPolicy.ExtraStore.AddRange(chain.ChainElements.Select(e => e.Certificate).ToArray());
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var built = custom.Build(leaf);
        problem = built ? null : Describe(custom);
        return built;
    }

    private static string Describe(X509Chain chain)
        => string.Join("; ", chain.ChainStatus.Select(s => s.Status.ToString()).Distinct());
}
