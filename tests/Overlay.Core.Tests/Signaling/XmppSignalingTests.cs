using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.Xmpp;
using Overlay.Switching;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Signaling;

/// <summary>The shared signaling behaviour, run over XMPP through a real prosody (shared roster group overlay1).</summary>
[TestFixture]
[NonParallelizable]
public sealed class XmppSignalingTests : SignalingBehaviourTests
{
    private ProsodyServer _server = null!;

    [OneTimeSetUp]
    public async Task StartProsody() => _server = await ProsodyServer.StartAsync();

    [OneTimeTearDown]
    public async Task StopProsody()
    {
        if (_server is not null) await _server.DisposeAsync();
    }

    internal static XmppChannelOptions Options(ProsodyServer server, string account, string nodeId, IReadOnlyList<string> overlays) => new()
    {
        Jid = $"{account}@{server.Domain}",
        Password = ProsodyServer.Password,
        Host = server.EndPoint.Address.ToString(),
        Port = server.EndPoint.Port,
        TrustedCaCertificatePath = server.CaCertificatePath,
        NodeId = nodeId,
        Overlays = overlays,
        ReconnectMinDelay = TimeSpan.FromMilliseconds(100),
        ReconnectMaxDelay = TimeSpan.FromSeconds(1),
    };

    private protected override async Task<SignalingChannelBase> CreateMemberAsync(int index, string nodeId, IReadOnlyList<string> overlays,
        IReadOnlyDictionary<string, IReadOnlyList<string>>? overlayGroups = null)
    {
        var channel = new XmppSignalingChannel(Options(_server, $"node{index}", nodeId, overlays) with
        {
            OverlayGroups = overlayGroups ?? new Dictionary<string, IReadOnlyList<string>>(),
        });
        await channel.ConnectAsync();
        return channel;
    }

    private protected override async Task<SignalingChannelBase> CreateOutsiderAsync(string nodeId, IReadOnlyList<string> overlays)
    {
        var channel = new XmppSignalingChannel(Options(_server, ProsodyServer.Outsider, nodeId, overlays));
        await channel.ConnectAsync();
        return channel;
    }

    private protected override Task SendRawAsync(SignalingChannelBase from, string toAddress, string payload)
        => ((XmppSignalingChannel)from).SendRawAsync(toAddress, payload);

    [Test]
    public async Task A_wrong_password_is_an_authentication_error()
    {
        var options = Options(_server, "node3", NodeId.NewRandom().ToString(), ["ovl1"]) with { Password = "not-the-password" };
        await using var channel = new XmppSignalingChannel(options);

        var ex = await Assert.ThrowsAsync<XmppAuthenticationException>(() => channel.ConnectAsync());

        Assert.That(ex!.Condition, Is.EqualTo("not-authorized"));
        Assert.That(ex.Message, Does.Contain("wrong password"));
        TestContext.Out.WriteLine(ex.Message);
        Assert.That(channel.State, Is.EqualTo(SignalingState.Disconnected));
    }

    [Test]
    public async Task An_untrusted_server_certificate_is_a_certificate_error()
    {
        // No CA configured: the self-signed certificate is not in the system store.
        var options = Options(_server, "node3", NodeId.NewRandom().ToString(), ["ovl1"]) with { TrustedCaCertificatePath = null };
        await using var channel = new XmppSignalingChannel(options);

        var ex = await Assert.ThrowsAsync<XmppCertificateException>(() => channel.ConnectAsync());

        Assert.That(ex!.Message, Does.Contain("not trusted"));
        TestContext.Out.WriteLine(ex.Message);
    }

    [Test]
    public async Task A_ca_file_of_another_ca_is_a_certificate_error()
    {
        using var key = System.Security.Cryptography.ECDsa.Create();
        using var otherCa = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=other CA", key, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(Path.GetTempPath(), $"other-ca-{Guid.NewGuid():N}.pem");
        await File.WriteAllTextAsync(path, otherCa.ExportCertificatePem());
        try
        {
            await using var channel = new XmppSignalingChannel(Options(_server, "node3", NodeId.NewRandom().ToString(), ["ovl1"]) with { TrustedCaCertificatePath = path });
            var ex = await Assert.ThrowsAsync<XmppCertificateException>(() => channel.ConnectAsync());
            Assert.That(ex!.Message, Does.Contain("does not lead to the CA"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public async Task A_pinned_certificate_is_accepted_and_a_wrong_pin_is_a_certificate_error()
    {
        var pem = await File.ReadAllTextAsync(_server.CaCertificatePath);
        using var cert = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(pem);
        var pin = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(cert.RawData));
        var good = Options(_server, "node4", NodeId.NewRandom().ToString(), ["ovl1"]) with { TrustedCaCertificatePath = null, PinnedCertificateSha256 = pin };
        var bad = good with { PinnedCertificateSha256 = new string('0', 64) };

        await using (var channel = new XmppSignalingChannel(good))
        {
            await channel.ConnectAsync();
            Assert.That(channel.State, Is.EqualTo(SignalingState.Connected));
        }
        await using var wrong = new XmppSignalingChannel(bad);
        var ex = await Assert.ThrowsAsync<XmppCertificateException>(() => wrong.ConnectAsync());
        Assert.That(ex!.Message, Does.Contain("does not match the pinned"));
    }

    [Test]
    public async Task Without_a_port_the_server_is_found_through_its_srv_records_in_priority_order()
    {
        // The preferred record points at a closed port; the client must fall through to the next one.
        int closedPort;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            closedPort = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        await using var dns = new DnsSrvResolverTests.FakeDnsServer((0, 0, (ushort)closedPort, "127.0.0.1"), (10, 0, (ushort)_server.EndPoint.Port, "localhost"));
        var options = Options(_server, "node6", NodeId.NewRandom().ToString(), ["ovl1"]) with { Host = null, Port = null, DnsServer = dns.EndPoint };
        await using var channel = new XmppSignalingChannel(options);

        await channel.ConnectAsync();

        Assert.That(channel.State, Is.EqualTo(SignalingState.Connected));
        Assert.That(dns.Queries, Is.EqualTo(1));
    }

    [TestCase("SCRAM-SHA-256")]
    [TestCase("SCRAM-SHA-1")]
    [TestCase("PLAIN")]
    public async Task Each_password_mechanism_authenticates_against_prosody(string mechanism)
    {
        await using var channel = new XmppSignalingChannel(Options(_server, "node7", NodeId.NewRandom().ToString(), ["ovl1"]) with { SaslMechanisms = [mechanism] });
        await channel.ConnectAsync();
        Assert.That(channel.AuthenticationMechanism, Is.EqualTo(mechanism));
    }

    [TestCase("SCRAM-SHA-1")]
    [TestCase("PLAIN")]
    public async Task A_wrong_password_is_an_authentication_error_with_every_mechanism(string mechanism)
    {
        await using var channel = new XmppSignalingChannel(Options(_server, "node7", NodeId.NewRandom().ToString(), ["ovl1"]) with { SaslMechanisms = [mechanism], Password = "wrong" });
        var ex = await Assert.ThrowsAsync<XmppAuthenticationException>(() => channel.ConnectAsync());
        Assert.That(ex!.Condition, Is.EqualTo("not-authorized"));
    }

    [Test]
    public async Task Connecting_uses_scram_and_binds_a_full_jid()
    {
        await using var channel = new XmppSignalingChannel(Options(_server, "node5", NodeId.NewRandom().ToString(), ["ovl1"]));
        await channel.ConnectAsync();
        Assert.That(channel.LocalAddress, Does.StartWith("node5@overlay.test/"));
        Assert.That(channel.AuthenticationMechanism, Does.StartWith("SCRAM-SHA-"));
        TestContext.Out.WriteLine($"bound {channel.LocalAddress} with {channel.AuthenticationMechanism}");
    }
}
