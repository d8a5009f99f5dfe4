using System.Text;
using Microsoft.Extensions.Configuration;
using NUnit.Framework;

namespace Overlay.Core.Tests.Node;

/// <summary>The same keys from any <see cref="IConfiguration"/>: appsettings.json sections, environment variables, the command line.</summary>
public class ConfigurationSourceTests
{
    /// <summary>Every key the reader knows, once, as a configuration section holds them (all text).</summary>
    private static readonly Dictionary<string, string?> EveryKey = new()
    {
        ["Overlay:NodeId"] = "0123456789abcdef0123456789abcdef",
        ["Overlay:Signal:HostAddress"] = "xmpp.example.org",
        ["Overlay:Signal:Port"] = "5223",
        ["Overlay:Signal:Username"] = "node1@example.org",
        ["Overlay:Signal:Password"] = "secret",
        ["Overlay:Signal:AuthenticationMethod"] = "x509",
        ["Overlay:Signal:CaFile"] = "(a file made by the test)",
        ["Overlay:Signal:PinnedCertificateSha256"] = new string('a', 64),
        ["Overlay:Signal:ClientCertificateFile"] = "(a file made by the test)",
        ["Overlay:Stun:0"] = "stun1.example.org:3478",
        ["Overlay:Stun:1"] = "stun2.example.org:3478",
        ["Overlay:Turn:0:Address"] = "turn.example.org:3478",
        ["Overlay:Turn:0:User"] = "u",
        ["Overlay:Turn:0:Password"] = "p",
        ["Overlay:CertificateFile"] = "/var/lib/overlay/key.pem",
        ["Overlay:StateDirectory"] = "/var/lib/overlay",
        ["Overlay:IgnoredNetInterfaces:0"] = "docker0",
        ["Overlay:Links:RequestTimeout"] = "3",
        ["Overlay:Links:SetupTimeout"] = "12",
        ["Overlay:Links:KeepaliveInterval"] = "1.5",
        ["Overlay:Links:DeadPeerTimeout"] = "6",
        ["Overlay:Links:RestartInterval"] = "4",
        ["Overlay:Links:RecoveryTimeout"] = "20",
        ["Overlay:Links:TickInterval"] = "0.5",
        ["Overlay:Overlays:ovl1:NetDevice:Name"] = "ovl0",
        ["Overlay:Overlays:ovl1:NetDevice:IP4"] = "10.10.0.1",
        ["Overlay:Overlays:ovl1:NetDevice:PrefixLen"] = "16",
        ["Overlay:Overlays:ovl1:NetDevice:IP6"] = "fd00:10::1/64",
        ["Overlay:Overlays:ovl1:NetDevice:MTU"] = "1400",
        ["Overlay:Overlays:ovl1:NetDevice:MAC"] = "02:00:00:00:00:01",
        ["Overlay:Overlays:ovl1:NetDevice:Offload"] = "false",
        ["Overlay:Overlays:ovl1:MinSuccessors"] = "3",
        ["Overlay:Overlays:ovl1:MaxLongDistEdges"] = "5",
        ["Overlay:Overlays:ovl1:MaxOnDemandEdges"] = "1",
        ["Overlay:Overlays:ovl1:MaxIncomingEdges"] = "40",
        ["Overlay:Overlays:ovl1:StaticEdges:0"] = "ffffffffffffffffffffffffffffffff",
        ["Overlay:Overlays:ovl1:MaxLearnedAddresses"] = "1000",
        ["Overlay:Overlays:ovl1:MaxLocalAddresses"] = "8",
        ["Overlay:Overlays:ovl1:Groups:0"] = "eng",
        ["Overlay:Overlays:ovl1:TrustedCertificates:0"] = "/etc/overlay/ca.pem",
        ["Overlay:Overlays:ovl1:TrustedCertificates:1"] = "sha256:" + new string('a', 64),
    };

    [Test]
    public void Every_key_is_read_from_a_configuration_section()
    {
        var file = Path.GetTempFileName(); // the CA and client certificate files must exist
        OverlayNodeOptions o;
        try
        {
            var keys = new Dictionary<string, string?>(EveryKey) { ["Overlay:Signal:CaFile"] = file, ["Overlay:Signal:ClientCertificateFile"] = file };
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(keys).Build();

            o = OverlayConfiguration.Read(configuration.GetSection("Overlay"));
        }
        finally
        {
            File.Delete(file);
        }

        Assert.That(o.NodeId, Is.EqualTo("0123456789abcdef0123456789abcdef"));
        Assert.That(o.Signal, Is.EqualTo(new XmppSignalingOptions
        {
            HostAddress = "xmpp.example.org", Port = 5223, Username = "node1@example.org", Password = "secret",
            AuthenticationMethod = XmppAuthenticationMethod.X509, CaFile = file, PinnedCertificateSha256 = new string('a', 64),
            ClientCertificateFile = file,
        }));
        Assert.That(o.Stun, Is.EqualTo(new[] { "stun1.example.org:3478", "stun2.example.org:3478" }));
        Assert.That(o.Turn, Is.EqualTo(new[] { new TurnServerOptions("turn.example.org:3478", "u", "p") }));
        Assert.That((o.CertificateFile, o.StateDirectory), Is.EqualTo(("/var/lib/overlay/key.pem", "/var/lib/overlay")));
        Assert.That(o.IgnoredNetInterfaces, Is.EqualTo(new[] { "docker0" }));
        Assert.That(o.Links, Is.EqualTo(new LinkTimings
        {
            RequestTimeout = TimeSpan.FromSeconds(3), SetupTimeout = TimeSpan.FromSeconds(12), KeepaliveInterval = TimeSpan.FromSeconds(1.5),
            DeadPeerTimeout = TimeSpan.FromSeconds(6), RestartInterval = TimeSpan.FromSeconds(4), RecoveryTimeout = TimeSpan.FromSeconds(20),
            TickInterval = TimeSpan.FromSeconds(0.5),
        }));
        var a = o.Overlays.Single();
        Assert.That(a.Id, Is.EqualTo("ovl1"));
        Assert.That(a.NetDevice, Is.EqualTo(new NetDeviceOptions
        {
            Name = "ovl0", IPv4Address = "10.10.0.1", PrefixLength = 16, IPv6Address = "fd00:10::1/64", Mtu = 1400, MacAddress = "02:00:00:00:00:01", Offload = false,
        }));
        Assert.That((a.MinSuccessors, a.MaxLongDistEdges, a.MaxOnDemandEdges, a.MaxIncomingEdges, a.MaxLearnedAddresses, a.MaxLocalAddresses),
            Is.EqualTo((3, (int?)5, 1, (int?)40, 1000, 8)));
        Assert.That((a.StaticEdges, a.Groups), Is.EqualTo((new[] { "ffffffffffffffffffffffffffffffff" }, new[] { "eng" })));
        Assert.That(a.TrustedCertificates, Is.EqualTo(new[] { "/etc/overlay/ca.pem", "sha256:" + new string('a', 64) }));
    }

    [Test]
    public void An_appsettings_section_reads_as_the_json_file_does()
    {
        var appsettings = """
            { "Logging": { "LogLevel": { "Default": "Information" } },
              "Overlay": {
                "Signal": { "HostAddress": "xmpp.example.org", "Port": 5222, "Username": "node1@example.org", "Password": "secret" },
                "Stun": [ "stun.example.org:3478" ],
                "Links": { "DeadPeerTimeout": 8.5 },
                "Overlays": { "A0FB389": { "NetDevice": { "Name": "ovl0", "IP4": "10.10.0.1", "Offload": false }, "StaticEdges": [], "Groups": [ "a" ] },
                              "B1": { "Groups": [ "b" ] } } } }
            """;
        var file = System.Text.Json.JsonDocument.Parse(appsettings).RootElement.GetProperty("Overlay").GetRawText();

        var fromSection = OverlayConfiguration.Read(Build(appsettings).GetSection("Overlay"));
        var fromFile = OverlayConfiguration.Parse(file);

        Assert.That(fromSection.Signal, Is.EqualTo(fromFile.Signal));
        Assert.That(fromSection.Stun, Is.EqualTo(fromFile.Stun));
        Assert.That(fromSection.Links, Is.EqualTo(fromFile.Links));
        Assert.That(fromSection.Overlays.Select(o => o with { StaticEdges = [], Groups = [] }),
            Is.EqualTo(fromFile.Overlays.Select(o => o with { StaticEdges = [], Groups = [] })));
        Assert.That(fromSection.Overlays.Select(o => o.StaticEdges.Count), Is.EqualTo(new[] { 0, 0 }));
    }

    [Test]
    public void Environment_variables_override_the_file_and_carry_the_secrets()
    {
        const string prefix = "OVERLAY_HOSTING_TEST_";
        var json = """
            { "Overlay": { "Turn": [ { "Address": "turn.example.org:3478", "User": "node1" } ], "Stun": [],
                           "Overlays": { "ovl1": { "NetDevice": { "MTU": 1410 } } } } }
            """;
        try
        {
            // Keys as a shell or a systemd unit writes them: '__' for ':', any case.
            Environment.SetEnvironmentVariable(prefix + "Overlay__Turn__0__Password", "from-the-environment");
            Environment.SetEnvironmentVariable(prefix + "OVERLAY__OVERLAYS__ovl1__NETDEVICE__MTU", "1300");
            Environment.SetEnvironmentVariable(prefix + "Overlay__Overlays__ovl2", "");
            var configuration = new ConfigurationBuilder()
                .AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json)))
                .AddEnvironmentVariables(prefix)
                .AddCommandLine(["--Overlay:Stun:0=stun.example.org:3478"])
                .Build();

            var o = OverlayConfiguration.Read(configuration.GetSection("Overlay"));

            Assert.That(o.Turn.Single(), Is.EqualTo(new TurnServerOptions("turn.example.org:3478", "node1", "from-the-environment")));
            Assert.That(o.Overlays.Select(x => (x.Id, x.NetDevice.Mtu)), Is.EqualTo(new[] { ("ovl1", 1300), ("ovl2", 1410) }),
                "an overlay named by an empty variable joins with defaults");
            Assert.That(o.Stun, Is.EqualTo(new[] { "stun.example.org:3478" }), "from the command line");
        }
        finally
        {
            foreach (var name in new[] { "Overlay__Turn__0__Password", "OVERLAY__OVERLAYS__ovl1__NETDEVICE__MTU", "Overlay__Overlays__ovl2" })
                Environment.SetEnvironmentVariable(prefix + name, null);
        }
    }

    [TestCase("Overlay:Stunn:0", "x:1", "Stunn")]
    [TestCase("Overlay:Overlays:a:NetDevice:Colour", "red", "Overlays.a.NetDevice.Colour")]
    [TestCase("Overlay:Overlays:a:NetDevice:MTU", "big", "Overlays.a.NetDevice.MTU")]
    [TestCase("Overlay:Overlays:a:NetDevice:MTU", "-1400", "Overlays.a.NetDevice.MTU")]
    [TestCase("Overlay:Overlays:a:NetDevice:Offload", "yes", "Overlays.a.NetDevice.Offload")]
    [TestCase("Overlay:Links:DeadPeerTimeout", "soon", "Links.DeadPeerTimeout")]
    [TestCase("Overlay:Links:DeadPeerTimeout", "0", "Links.DeadPeerTimeout")]
    [TestCase("Overlay:Stun", "stun.example.org:3478", "Stun")]
    [TestCase("Overlay:Signal", "xmpp.example.org", "Signal")]
    [TestCase("Overlay:Overlays:a:Groups:x", "g", "Overlays.a.Groups")]
    [TestCase("Overlay:Overlays:a:NetDevice:Name:0", "t0", "Overlays.a.NetDevice.Name")]
    [TestCase("Overlay:StateDirectory", " ", "StateDirectory")]
    public void A_bad_key_or_value_from_any_source_is_an_error_naming_it(string key, string value, string named)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Overlay:Overlays:a:MinSuccessors"] = "2",
            [key] = value,
        }).Build();

        var e = Assert.Throws<OverlayConfigurationException>(() => OverlayConfiguration.Read(configuration.GetSection("Overlay")))!;

        Assert.That(e.Key, Is.EqualTo(named), e.Message);
        Assert.That(e.Message, Does.Contain(named));
    }

    [Test]
    public void The_file_cases_name_the_same_keys_through_configuration()
    {
        // Everything ConfigurationTests feeds the JSON reader, through the appsettings reader instead; the exceptions are what
        // configuration cannot hold apart: invalid JSON is the JSON provider's error, and an array of overlays is an object with keys 0, 1...
        foreach (var (json, key) in ConfigurationTests.InvalidSettings)
        {
            if (key == "(file)") continue;
            var configuration = Build(json);
            var e = Assert.Throws<OverlayConfigurationException>(() => OverlayConfiguration.Read(configuration), json)!;
            Assert.That(e.Key, Is.EqualTo(json.Contains("\"Overlays\": [", StringComparison.Ordinal) ? "Overlays.0" : key), $"{json}: {e.Message}");
        }
    }

    private static IConfigurationRoot Build(string json) =>
        new ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json))).Build();
}
