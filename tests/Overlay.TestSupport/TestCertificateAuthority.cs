using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Overlay.TestSupport;

/// <summary>
/// A certificate authority for tests of an overlay's own trust anchor: a root (or an intermediate under another) with an
/// ECDSA P-256 key, which issues node certificates written as the PEM files nodes load (certificate, chain, key).
/// </summary>
public sealed class TestCertificateAuthority : IDisposable
{
    private readonly TestCertificateAuthority? _parent;

    private TestCertificateAuthority(X509Certificate2 certificate, ECDsa key, TestCertificateAuthority? parent)
    {
        Certificate = certificate;
        Key = key;
        _parent = parent;
    }

    public X509Certificate2 Certificate { get; }

    public ECDsa Key { get; }

    /// <summary>A root CA, or an intermediate CA that <paramref name="parent"/> signs.</summary>
    public static TestCertificateAuthority Create(string name, TestCertificateAuthority? parent = null)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var notBefore = DateTimeOffset.UtcNow.AddDays(-2);
        X509Certificate2 certificate;
        if (parent is null)
            certificate = request.CreateSelfSigned(notBefore, notBefore.AddYears(10));
        else
        {
            request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(parent.Certificate, true, false));
            using var issued = request.Create(parent.Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(parent.Key), notBefore, notBefore.AddYears(5), Serial());
            certificate = X509CertificateLoader.LoadCertificate(issued.RawData);
        }
        return new TestCertificateAuthority(X509CertificateLoader.LoadCertificate(certificate.RawData), key, parent);
    }

    /// <summary>Writes this CA's certificate (only) as PEM, for an overlay's <c>TrustedCertificates</c>.</summary>
    public string WriteCertificate(string path)
    {
        File.WriteAllText(path, Certificate.ExportCertificatePem() + "\n");
        return path;
    }

    /// <summary>
    /// Issues a node certificate for a fresh key and writes certificate, the chain up to (not including) the root, and the
    /// key to <paramref name="path"/> as a node's <c>CertificateFile</c>. Valid from <paramref name="notBefore"/> (a day ago)
    /// for <paramref name="lifetime"/> (a year).
    /// </summary>
    public string IssueNodeFile(string path, string subject, DateTimeOffset? notBefore = null, TimeSpan? lifetime = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={subject}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var from = notBefore ?? DateTimeOffset.UtcNow.AddDays(-1);
        using var certificate = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(Key), from, from + (lifetime ?? TimeSpan.FromDays(365)), Serial());
        var text = new System.Text.StringBuilder(certificate.ExportCertificatePem()).Append('\n');
        for (var ca = this; ca._parent is not null; ca = ca._parent) text.Append(ca.Certificate.ExportCertificatePem()).Append('\n');
        text.Append(key.ExportPkcs8PrivateKeyPem()).Append('\n');
        File.WriteAllText(path, text.ToString());
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }

    private static byte[] Serial() => RandomNumberGenerator.GetBytes(16);

    public void Dispose()
    {
        Certificate.Dispose();
        Key.Dispose();
    }
}
