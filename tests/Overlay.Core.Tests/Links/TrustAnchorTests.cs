using NUnit.Framework;
using Overlay.Links;
using Overlay.TestSupport;

namespace Overlay.Core.Tests.Links;

/// <summary>
/// An overlay's own trust anchor (<c>TrustedCertificates</c>): checked in the DTLS handshake after the signalled
/// fingerprint, so that whoever runs the signaling server cannot bring in a key of their own.
/// </summary>
public class TrustAnchorTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private DirectoryInfo _dir = null!;

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("overlay-trust-");

    [TearDown]
    public void DeleteDirectory() => _dir.Delete(recursive: true);

    private string FilePath(string name) => Path.Combine(_dir.FullName, name);

    private NodeIdentity Issue(TestCertificateAuthority ca, string name, DateTimeOffset? notBefore = null, TimeSpan? lifetime = null) =>
        NodeIdentity.LoadOrCreate(ca.IssueNodeFile(FilePath(name + ".pem"), name, notBefore, lifetime));

    private static async Task<(Exception? Client, Exception? Server)> HandshakeAsync(NodeIdentity client, TrustAnchor? clientTrust, NodeIdentity server,
        TrustAnchor? serverTrust)
    {
        var (a, b) = MemoryChannel.Pair();
        var now = DateTimeOffset.UtcNow;
        var c = DtlsHandshake.RunAsync(a, client: true, client, server.Fingerprint, Timeout, default, server.NodeId, clientTrust, now);
        var s = DtlsHandshake.RunAsync(b, client: false, server, client.Fingerprint, Timeout, default, client.NodeId, serverTrust, now);
        return (await Catch(c), await Catch(s));
    }

    private static async Task<Exception?> Catch(Task task)
    {
        try { await task; return null; }
        catch (Exception e) { return e; }
    }

    [Test]
    public async Task Peers_whose_certificates_the_overlays_ca_issued_link()
    {
        using var ca = TestCertificateAuthority.Create("overlay CA");
        using var trust = TrustAnchor.Load([ca.WriteCertificate(FilePath("ca.pem"))], "t")!;
        using var alice = Issue(ca, "alice");
        using var bob = Issue(ca, "bob");
        var (client, server) = await HandshakeAsync(alice, trust, bob, trust);
        Assert.That(client, Is.Null);
        Assert.That(server, Is.Null);
        Assert.That(trust.Authorities, Is.EqualTo(1));
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task A_member_whose_certificate_another_ca_issued_is_refused_with_its_key_named(bool outsiderIsClient)
    {
        using var ca = TestCertificateAuthority.Create("overlay CA");
        using var other = TestCertificateAuthority.Create("another CA");
        using var trust = TrustAnchor.Load([ca.WriteCertificate(FilePath("ca.pem"))], "t")!;
        using var alice = Issue(ca, "alice");
        using var mallory = Issue(other, "mallory");
        // Mallory's fingerprint and node ID are the ones signaling carries (its operator vouches for them); only the anchor stops her.
        var (client, server) = outsiderIsClient ? await HandshakeAsync(mallory, null, alice, trust) : await HandshakeAsync(alice, trust, mallory, null);
        var refusal = outsiderIsClient ? server : client;
        Assert.That(refusal, Is.InstanceOf<PeerAuthenticationException>());
        Assert.That(refusal!.Message, Does.Contain("not trusted by the overlay").And.Contain(TrustAnchor.KeyOf(mallory.Certificate)));
        Assert.That(TrustAnchor.KeyOf(mallory.Certificate), Does.StartWith("sha256:" + mallory.NodeId), "the key's name extends its node ID");
        Assert.That(outsiderIsClient ? client : server, Is.Not.Null, "the refused side gets no keys either");
    }

    [Test]
    public async Task A_self_signed_member_is_refused_where_a_ca_is_named()
    {
        using var ca = TestCertificateAuthority.Create("overlay CA");
        using var trust = TrustAnchor.Load([ca.WriteCertificate(FilePath("ca.pem"))], "t")!;
        using var alice = Issue(ca, "alice");
        using var selfSigned = NodeIdentity.CreateEphemeral("self");
        var (client, _) = await HandshakeAsync(alice, trust, selfSigned, null);
        Assert.That(client?.Message, Does.Contain(TrustAnchor.KeyOf(selfSigned.Certificate)));
    }

    [Test]
    public async Task A_certificate_issued_under_an_intermediate_ca_is_trusted_through_the_chain_it_sends()
    {
        using var root = TestCertificateAuthority.Create("root CA");
        using var intermediate = TestCertificateAuthority.Create("site CA", root);
        using var trust = TrustAnchor.Load([root.WriteCertificate(FilePath("root.pem"))], "t")!;
        using var alice = Issue(root, "alice");
        using var bob = Issue(intermediate, "bob");
        Assert.That(bob.Chain, Has.Count.EqualTo(1), "the node's file carries its intermediate");
        var (client, server) = await HandshakeAsync(alice, trust, bob, trust);
        Assert.That(client, Is.Null, "alice builds bob's chain from what he sent");
        Assert.That(server, Is.Null);
    }

    [Test]
    public async Task An_expired_certificate_is_refused()
    {
        using var ca = TestCertificateAuthority.Create("overlay CA");
        using var trust = TrustAnchor.Load([ca.WriteCertificate(FilePath("ca.pem"))], "t")!;
        using var alice = Issue(ca, "alice");
        using var old = Issue(ca, "old", DateTimeOffset.UtcNow.AddDays(-30), TimeSpan.FromDays(10));
        var (client, _) = await HandshakeAsync(alice, trust, old, null);
        Assert.That(client?.Message, Does.Contain(TrustAnchor.KeyOf(old.Certificate)));
    }

    [Test]
    public async Task Pinned_keys_are_trusted_whoever_signed_them_and_no_others()
    {
        using var alice = NodeIdentity.CreateEphemeral("alice");
        using var bob = NodeIdentity.CreateEphemeral("bob");
        using var carol = NodeIdentity.CreateEphemeral("carol");
        // Bob by pin, Alice by her certificate file: both ways of naming a key.
        File.WriteAllText(FilePath("alice.crt"), alice.Certificate.ExportCertificatePem());
        using var trust = TrustAnchor.Load([TrustAnchor.KeyOf(bob.Certificate).ToUpperInvariant().Replace("SHA256:", "sha256:"), FilePath("alice.crt")], "t")!;
        Assert.That(trust.Keys, Is.EqualTo(2));
        Assert.That(trust.Authorities, Is.Zero);
        var (client, server) = await HandshakeAsync(alice, trust, bob, trust);
        Assert.That((client, server), Is.EqualTo(((Exception?)null, (Exception?)null)));
        var (refused, _) = await HandshakeAsync(alice, trust, carol, null);
        Assert.That(refused?.Message, Does.Contain("not among the overlay's trusted keys").And.Contain(TrustAnchor.KeyOf(carol.Certificate)));
    }

    [Test]
    public void Bad_entries_are_configuration_errors_naming_the_entry()
    {
        Assert.That(TrustAnchor.Load([], "k"), Is.Null, "none named: signaling's fingerprints are trusted, as before");
        Assert.That(() => TrustAnchor.Load([FilePath("missing.pem")], "Overlays.a.TrustedCertificates"),
            Throws.TypeOf<OverlayConfigurationException>().With.Message.Contains("Overlays.a.TrustedCertificates[0]").And.Message.Contains("missing.pem"));
        Assert.That(() => TrustAnchor.Load(["sha256:abcd"], "k"), Throws.TypeOf<OverlayConfigurationException>().With.Message.Contains("k[0]"));
        File.WriteAllText(FilePath("empty.pem"), "no certificate here\n");
        Assert.That(() => TrustAnchor.Load(["sha256:" + new string('a', 64), FilePath("empty.pem")], "k"),
            Throws.TypeOf<OverlayConfigurationException>().With.Message.Contains("k[1]").And.Message.Contains("no PEM certificate"));
    }

    [Test]
    public async Task A_node_whose_own_certificate_its_overlay_does_not_trust_is_a_configuration_error_at_start()
    {
        using var ca = TestCertificateAuthority.Create("overlay CA");
        var caFile = ca.WriteCertificate(FilePath("ca.pem"));
        await using var node = OverlayNode.Create()
            .UseInProcessSignaling(new Overlay.Signaling.InProcess.InProcessSignalingHub())
            .WithCertificateFile(FilePath("self-signed.pem"))
            .JoinOverlay("a", o => o.WithInMemoryDevice().WithTrustedCertificates(caFile))
            .Build();
        var e = await Assert.ThrowsAsync<OverlayConfigurationException>(async () => await node.StartAsync());
        Assert.That(e!.Message, Does.Contain("Overlays.a.TrustedCertificates").And.Contain("own certificate").And.Contain("sha256:" + node.NodeId));
    }
}
