using NUnit.Framework;
using Overlay.Core.Tests.Nat;
using Overlay.Links;
using Overlay.Nat.Ice;

namespace Overlay.Core.Tests.Links;

public class DtlsHandshakeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Test]
    public async Task Both_sides_authenticate_and_export_matching_keys_for_each_direction()
    {
        using var alice = NodeIdentity.CreateEphemeral("alice");
        using var bob = NodeIdentity.CreateEphemeral("bob");
        var (a, b) = MemoryChannel.Pair();
        var client = DtlsHandshake.RunAsync(a, client: true, alice, bob.Fingerprint, Timeout, default);
        var server = DtlsHandshake.RunAsync(b, client: false, bob, alice.Fingerprint, Timeout, default);
        var (sa, sb) = (await client, await server);
        var (ka, kb) = (sa.ForEpoch(0), sb.ForEpoch(0));
        Assert.That(ka.SendKey, Is.EqualTo(kb.ReceiveKey));
        Assert.That(ka.SendSalt, Is.EqualTo(kb.ReceiveSalt));
        Assert.That(kb.SendKey, Is.EqualTo(ka.ReceiveKey));
        Assert.That(ka.SendKey, Is.Not.EqualTo(ka.ReceiveKey), "each direction has its own key");
        Assert.That(ka.SendKey, Has.Length.EqualTo(16));
        Assert.That(sa.ForEpoch(1).SendKey, Is.EqualTo(sb.ForEpoch(1).ReceiveKey));
        Assert.That(sa.ForEpoch(1).SendKey, Is.Not.EqualTo(ka.SendKey), "every epoch has its own keys");
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task A_peer_whose_certificate_is_not_the_signalled_one_is_refused(bool impostorIsServer)
    {
        using var alice = NodeIdentity.CreateEphemeral("alice");
        using var bob = NodeIdentity.CreateEphemeral("bob");
        using var mallory = NodeIdentity.CreateEphemeral("mallory");
        var (a, b) = MemoryChannel.Pair();
        // Alice expects Bob; Mallory answers in his place with her own certificate.
        var aliceSide = DtlsHandshake.RunAsync(a, client: !impostorIsServer, alice, bob.Fingerprint, Timeout, default);
        var malloryside = DtlsHandshake.RunAsync(b, client: impostorIsServer, mallory, alice.Fingerprint, Timeout, default);
        var e = (await Assert.ThrowsAsync<PeerAuthenticationException>(async () => await aliceSide))!;
        Assert.That(e.Message, Does.Contain("not the one signalled").And.Contain(mallory.Fingerprint.ToString()));
        Assert.That(async () => await malloryside, Throws.Exception, "the impostor gets no keys either");
    }

    [Test]
    public async Task A_silent_peer_is_a_timeout()
    {
        using var alice = NodeIdentity.CreateEphemeral("alice");
        using var bob = NodeIdentity.CreateEphemeral("bob");
        var (a, _) = MemoryChannel.Pair();
        Assert.That(async () => await DtlsHandshake.RunAsync(a, client: true, alice, bob.Fingerprint, TimeSpan.FromSeconds(1), default), Throws.InstanceOf<TimeoutException>());
        await Task.CompletedTask;
    }

    [Test]
    public async Task The_handshake_runs_over_a_real_ice_path_on_loopback()
    {
        using var alice = NodeIdentity.CreateEphemeral("alice");
        using var bob = NodeIdentity.CreateEphemeral("bob");
        await using var agentA = IceAgent.Create(new IceOptions(), IceRole.Controlling);
        await using var agentB = IceAgent.Create(new IceOptions(), IceRole.Controlled);
        await IcePeers.ConnectAsync(agentA, agentB, TimeSpan.FromSeconds(10));
        var client = DtlsHandshake.RunAsync(agentA.Channel, client: true, alice, bob.Fingerprint, Timeout, default);
        var server = DtlsHandshake.RunAsync(agentB.Channel, client: false, bob, alice.Fingerprint, Timeout, default);
        Assert.That((await client).ForEpoch(0).SendKey, Is.EqualTo((await server).ForEpoch(0).ReceiveKey));
    }

    [Test]
    public void A_supplied_certificate_must_carry_its_ecdsa_key()
    {
        using var own = NodeIdentity.CreateEphemeral();
        using var withKey = System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions.CopyWithPrivateKey(own.Certificate, own.Key);
        using var supplied = NodeIdentity.FromCertificate(withKey);
        Assert.That(supplied.Fingerprint, Is.EqualTo(own.Fingerprint));
        Assert.That(() => NodeIdentity.FromCertificate(own.Certificate), Throws.ArgumentException.With.Message.Contains("private key"));
    }

    [Test]
    public void An_identity_is_persisted_on_first_use_and_loaded_after()
    {
        var path = Path.Combine(Path.GetTempPath(), $"overlay-id-{Guid.NewGuid():n}", "node.pem");
        try
        {
            using var created = NodeIdentity.LoadOrCreate(path);
            using var loaded = NodeIdentity.LoadOrCreate(path);
            Assert.That(loaded.Fingerprint, Is.EqualTo(created.Fingerprint));
            if (!OperatingSystem.IsWindows())
                Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), "the key file is private");
            Assert.That(CertificateFingerprint.TryParse(created.Fingerprint.ToString(), out var parsed) && parsed == created.Fingerprint, Is.True);
            File.WriteAllText(path, "garbage");
            Assert.That(() => NodeIdentity.LoadOrCreate(path), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(path));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }
}
