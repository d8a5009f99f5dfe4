using NUnit.Framework;

namespace Overlay.Core.Tests.Node;

public class ConfigurationTests
{
    private const string Full = """
        {
          // comments are allowed, as in hand-written configs
          "NodeId": "0123456789abcdef0123456789abcdef",
          "Signal": { "HostAddress": "xmpp.example.org", "Port": "5222", "AuthenticationMethod": "password",
                      "Username": "node1@example.org", "Password": "secret" },
          "Stun": [ "stun.example.org:3478", "[2001:db8::1]:3478" ],
          "Turn": [ { "Address": "198.51.100.10:3478", "User": "node", "Password": "secret" } ],
          "Overlays": {
            "A0FB389": { "NetDevice": { "Name": "ovl0", "IP4": "10.10.0.1", "PrefixLen": 16, "IP6": "fd00:10::1/64", "MTU": 1410 },
                         "MinSuccessors": 3, "MaxLongDistEdges": 4, "StaticEdges": [ "ffffffffffffffffffffffffffffffff" ],
                         "MaxLearnedAddresses": 200000, "MaxLocalAddresses": 64, "Groups": [ "engineering", "ops" ] },
            "B1": { "NetDevice": { "Offload": false }, "Groups": [ "lab" ] }
          }
        }
        """;

    [Test]
    public void Reads_edgevpn_style_keys_into_options()
    {
        var options = OverlayConfiguration.Parse(Full);
        Assert.That(options.NodeId, Is.EqualTo("0123456789abcdef0123456789abcdef"));
        var xmpp = (XmppSignalingOptions)options.Signal;
        Assert.That((xmpp.HostAddress, xmpp.Port, xmpp.Username, xmpp.Password, xmpp.AuthenticationMethod),
            Is.EqualTo(("xmpp.example.org", (int?)5222, "node1@example.org", "secret", XmppAuthenticationMethod.Password)));
        Assert.That(options.Stun, Is.EqualTo(new[] { "stun.example.org:3478", "[2001:db8::1]:3478" }));
        Assert.That(options.Turn.Single(), Is.EqualTo(new TurnServerOptions("198.51.100.10:3478", "node", "secret")));
        Assert.That(options.Overlays.Select(o => o.Id), Is.EqualTo(new[] { "A0FB389", "B1" }));
        var a = options.Overlays[0];
        Assert.That(a.NetDevice, Is.EqualTo(new NetDeviceOptions { Name = "ovl0", IPv4Address = "10.10.0.1", PrefixLength = 16, IPv6Address = "fd00:10::1/64", Mtu = 1410 }));
        Assert.That((a.MinSuccessors, a.MaxLongDistEdges, a.MaxOnDemandEdges), Is.EqualTo((3, (int?)4, 2)));
        Assert.That(a.StaticEdges, Is.EqualTo(new[] { "ffffffffffffffffffffffffffffffff" }));
        Assert.That((a.Groups, options.Overlays[1].Groups), Is.EqualTo((new[] { "engineering", "ops" }, new[] { "lab" })));
        Assert.That((a.MaxLearnedAddresses, a.MaxLocalAddresses), Is.EqualTo((200_000, 64)));
        var b = options.Overlays[1];
        Assert.That((b.NetDevice, b.MinSuccessors, b.MaxLongDistEdges), Is.EqualTo((new NetDeviceOptions { Offload = false }, 2, (int?)null)));
        Assert.That((b.MaxLearnedAddresses, b.MaxLocalAddresses), Is.EqualTo((65_536, 1_024)), "the switch's bounds by default");
        Assert.That(a.NetDevice.Offload, Is.True, "offload is on unless turned off");
    }

    [Test]
    public void Signaling_timings_are_read_in_seconds_and_default_to_a_ping_every_30_s_and_backoff_from_1_to_60_s()
    {
        var timed = (XmppSignalingOptions)OverlayConfiguration.Parse("""
            { "Signal": { "HostAddress": "x", "Username": "u@d", "Password": "p", "PingInterval": 5, "PingTimeout": 2.5,
                          "ConnectTimeout": 7, "ReconnectMinDelay": 0.25, "ReconnectMaxDelay": 20 },
              "Overlays": { "a": {} } }
            """).Signal;
        Assert.That(new[] { timed.PingInterval, timed.PingTimeout, timed.ConnectTimeout, timed.ReconnectMinDelay, timed.ReconnectMaxDelay },
            Is.EqualTo(new[] { 5, 2.5, 7, 0.25, 20 }.Select(TimeSpan.FromSeconds)));
        var plain = (XmppSignalingOptions)OverlayConfiguration.Parse(Full).Signal;
        Assert.That(new[] { plain.PingInterval, plain.PingTimeout, plain.ConnectTimeout, plain.ReconnectMinDelay, plain.ReconnectMaxDelay },
            Is.EqualTo(new[] { 30.0, 10, 15, 1, 60 }.Select(TimeSpan.FromSeconds)));
        var fromCode = new XmppSignalingOptions { HostAddress = "x", Username = "u@d", Password = "p", ReconnectMaxDelay = TimeSpan.FromMilliseconds(500) };
        Assert.That(Assert.Throws<OverlayConfigurationException>(() => new OverlayNodeBuilder().UseXmpp(fromCode).JoinOverlay("a").BuildOptions())!.Message,
            Does.Contain("Signal.ReconnectMaxDelay"), "code is held to the same rules as the file");
    }

    [Test]
    public void The_fluent_builder_makes_the_same_options_as_the_file()
    {
        var built = new OverlayNodeBuilder()
            .WithNodeId("0123456789abcdef0123456789abcdef")
            .UseXmpp("xmpp.example.org", "node1@example.org", "secret", port: 5222)
            .UseStun("stun.example.org:3478").UseStun("[2001:db8::1]:3478")
            .UseTurn("198.51.100.10:3478", "node", "secret")
            .JoinOverlay("A0FB389", o => o.WithTap("ovl0").WithAddress("10.10.0.1/16").WithAddress("fd00:10::1/64").WithMtu(1410)
                .WithTopology(minSuccessors: 3, maxLongDistEdges: 4).WithStaticEdge("ffffffffffffffffffffffffffffffff")
                .WithSwitchLimits(maxLearnedAddresses: 200_000, maxLocalAddresses: 64).WithGroups("engineering", "ops"))
            .JoinOverlay("B1", o => o.WithGroups("lab"))
            .BuildOptions();
        var read = OverlayConfiguration.Parse(Full);
        Assert.That(built.Signal, Is.EqualTo(read.Signal));
        Assert.That(built.Overlays[0] with { StaticEdges = [], Groups = [] }, Is.EqualTo(read.Overlays[0] with { StaticEdges = [], Groups = [] }));
        Assert.That(built.Overlays[0].StaticEdges, Is.EqualTo(read.Overlays[0].StaticEdges));
        Assert.That(built.Overlays.Select(o => o.Groups), Is.EqualTo(read.Overlays.Select(o => o.Groups)));
        Assert.That(built.Stun, Is.EqualTo(read.Stun));
        Assert.That(built.Turn, Is.EqualTo(read.Turn));
    }

    /// <summary>Invalid settings and the key their error must name (also read through configuration, ConfigurationSourceTests).</summary>
    internal static readonly (string Json, string Key)[] InvalidSettings =
    [
        ("""{ "NodeId": "XYZ", "Overlays": { "a": {} } }""", "NodeId"),
        ("""{ "Overlays": { "a": {} }, "Stunn": [] }""", "Stunn"),
        ("""{ "Overlays": { "a": { "NetDevice": { "PrefixLen": 33 } } } }""", "Overlays.a.NetDevice.PrefixLen"),
        ("""{ "Overlays": { "a": { "NetDevice": { "MTU": "big" } } } }""", "Overlays.a.NetDevice.MTU"),
        ("""{ "Overlays": { "a": { "NetDevice": { "Offload": "yes" } } } }""", "Overlays.a.NetDevice.Offload"),
        ("""{ "Overlays": { "a": { "NetDevice": { "IP4": "10.0.0.300" } } } }""", "Overlays.a.NetDevice.IP4"),
        ("""{ "Overlays": { "a": { "NetDevice": { "Name": "a-name-longer-than-15" } } } }""", "Overlays.a.NetDevice.Name"),
        ("""{ "Overlays": { "a": { "NetDevice": { "Name": ".." } } } }""", "Overlays.a.NetDevice.Name"),
        ("""{ "Overlays": { "a": { "NetDevice": { "Name": "tap\u00e9" } } } }""", "Overlays.a.NetDevice.Name"),
        ("""{ "Overlays": { "a": { "NetDevice": { "MAC": "01:00:5e:00:00:01" } } } }""", "Overlays.a.NetDevice.MAC"),
        ("""{ "Overlays": { "a": { "StaticEdges": [ "nope" ] } } }""", "Overlays.a.StaticEdges[0]"),
        ("""{ "Overlays": { "a": { "Groups": [ " " ] } } }""", "Overlays.a.Groups[0]"),
        ("""{ "Signal": { "HostAddress": "x.example", "Username": "n@x.example", "Password": "p" }, "Overlays": { "a": { "Groups": [ "g" ] }, "b": {} } }""", "Overlays.b.Groups"),
        ("""{ "Overlays": { "a": { "MinSuccessors": 0 } } }""", "Overlays.a.MinSuccessors"),
        ("""{ "Overlays": { "a": { "MaxLearnedAddresses": 0 } } }""", "Overlays.a.MaxLearnedAddresses"),
        ("""{ "Overlays": { "a": { "MaxLocalAddresses": -1 } } }""", "Overlays.a.MaxLocalAddresses"),
        ("""{ "Overlays": { "a": { "NetDevice": { "Name": "t0" } }, "b": { "NetDevice": { "Name": "t0" } } } }""", "Overlays.b.NetDevice.Name"),
        ("""{ "Overlays": {} }""", "Overlays"),
        ("""{ }""", "Overlays"),
        ("""{ "Stun": [ "no-port" ], "Overlays": { "a": {} } }""", "Stun[0]"),
        ("""{ "Turn": [ { "Address": "t:3478", "User": "u" } ], "Overlays": { "a": {} } }""", "Turn[0].Password"),
        ("""{ "Turn": [ { "Address": "t:3478", "User": "u", "Password": "p", "Transport": "sctp" } ], "Overlays": { "a": {} } }""", "Turn[0].Transport"),
        ("""{ "Turn": [ { "Address": "turns:t:443", "User": "u", "Password": "p", "Transport": "udp" } ], "Overlays": { "a": {} } }""", "Turn[0].Transport"),
        ("""{ "Turn": [ { "Address": "turns:t", "User": "u", "Password": "p" } ], "Overlays": { "a": {} } }""", "Turn[0].Address"),
        ("""{ "Turn": [ { "Address": "t:443", "User": "u", "Password": "p", "CaFile": "/nonexistent/ca.pem" } ], "Overlays": { "a": {} } }""", "Turn[0].CaFile"),
        ("""{ "Signal": { "HostAddress": "x", "Username": "u@d" }, "Overlays": { "a": {} } }""", "Signal.Password"),
        ("""{ "Signal": { "HostAddress": "x", "Username": "nodomain", "Password": "p" }, "Overlays": { "a": {} } }""", "Signal.Username"),
        ("""{ "Signal": { "HostAddress": "x", "Username": "u@d", "Password": "p", "AuthenticationMethod": "TOKEN" }, "Overlays": { "a": {} } }""", "Signal.AuthenticationMethod"),
        ("""{ "Signal": { "HostAddress": "x", "Username": "u@d", "Password": "p", "Port": 70000 }, "Overlays": { "a": {} } }""", "Signal.Port"),
        ("""{ "Signal": { "HostAddress": "x", "Username": "u@d", "Password": "p", "PingTimeout": 0 }, "Overlays": { "a": {} } }""", "Signal.PingTimeout"),
        ("""{ "Signal": { "HostAddress": "x", "Username": "u@d", "Password": "p", "ReconnectMinDelay": 30, "ReconnectMaxDelay": 10 }, "Overlays": { "a": {} } }""", "Signal.ReconnectMaxDelay"),
        ("""{ "Overlays": [ "a" ] }""", "Overlays"),
        ("""{ "Overlays": { "a b": {} } }""", "Overlays.a b"),
        ("""{ "Overlays": """, "(file)"),
        ("""{ "DataPath": { "EventLoops": 0 }, "Overlays": { "a": {} } }""", "DataPath.EventLoops"),
        ("""{ "DataPath": { "EventLoops": 17 }, "Overlays": { "a": {} } }""", "DataPath.EventLoops"),
        ("""{ "DataPath": { "Loops": 2 }, "Overlays": { "a": {} } }""", "DataPath.Loops"),
    ];

    private static IEnumerable<TestCaseData> InvalidCases() => InvalidSettings.Select(c => new TestCaseData(c.Json, c.Key));

    [TestCaseSource(nameof(InvalidCases))]
    public void An_invalid_setting_is_an_error_naming_its_key(string json, string key)
    {
        var e = Assert.Throws<OverlayConfigurationException>(() => OverlayConfiguration.Parse(json))!;
        Assert.That(e.Key, Is.EqualTo(key), e.Message);
        Assert.That(e.Message, Does.Contain(key));
    }

    [Test]
    public void The_data_path_takes_its_event_loop_count_and_defaults_to_one_per_core_at_most_eight()
    {
        var options = OverlayConfiguration.Parse("""{ "DataPath": { "EventLoops": 3, "UdpSegmentationOffload": false }, "Overlays": { "a": {} } }""");
        Assert.That(options.DataPath.EventLoops, Is.EqualTo(3));
        Assert.That(options.DataPath.UdpSegmentationOffload, Is.False);
        Assert.That(OverlayConfiguration.Parse("""{ "Overlays": { "a": {} } }""").DataPath.EventLoops, Is.EqualTo(Math.Clamp(Environment.ProcessorCount, 1, 8)));
    }

    [TestCase("t.example:3478", null, "Udp,Tcp")]
    [TestCase("turn:t.example:3478", null, "Udp,Tcp")]
    [TestCase("t.example:3478", "tcp", "Tcp")]
    [TestCase("t.example:443", "tls", "Tls")]
    [TestCase("turns:t.example:443", null, "Tls")]
    [TestCase("[2001:db8::10]:3478", null, "Udp,Tcp")]
    [TestCase("turns:[2001:db8::10]:443", null, "Tls")]
    public void A_turn_server_without_a_transport_is_tried_over_udp_and_tcp_and_tls_is_asked_for(string address, string? transport, string expected)
    {
        var json = $$"""{ "Turn": [ { "Address": "{{address}}", "User": "u", "Password": "p"{{(transport is null ? "" : $", \"Transport\": \"{transport}\"")}} } ], "Overlays": { "a": {} } }""";
        var turn = OverlayConfiguration.Parse(json).Turn.Single();
        Assert.That(string.Join(",", turn.Transports), Is.EqualTo(expected));
        Assert.That(turn.HostPort, Is.EqualTo(address.Split(':', 2)[0] is "turn" or "turns" ? address.Split(':', 2)[1] : address));
    }

    [Test]
    public void A_missing_file_is_a_clear_error()
    {
        var e = Assert.Throws<OverlayConfigurationException>(() => OverlayConfiguration.Load("/nonexistent/overlay.json"))!;
        Assert.That(e.Message, Does.Contain("/nonexistent/overlay.json"));
    }

    [Test]
    public void The_builder_validates_at_build()
    {
        var builder = new OverlayNodeBuilder().JoinOverlay("a", o => o.WithAddress("10.0.0.1/40"));
        var e = Assert.Throws<OverlayConfigurationException>(() => builder.BuildOptions())!;
        Assert.That(e.Key, Is.EqualTo("Overlays.a.NetDevice.PrefixLen"));
    }

    [TestCase(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead, true)]
    [TestCase(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, true)]
    [TestCase(UnixFileMode.UserRead | UnixFileMode.UserWrite, false)]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task A_configuration_with_passwords_that_others_can_read_gets_a_warning(UnixFileMode mode, bool warned)
    {
        var directory = Directory.CreateTempSubdirectory("overlay-config-");
        try
        {
            var config = Path.Combine(directory.FullName, "node.json");
            var key = Path.Combine(directory.FullName, "node.pem");
            // The node ID is left out: it is the new key's.
            await File.WriteAllTextAsync(config, Full.Replace("\"NodeId\": \"0123456789abcdef0123456789abcdef\",", "", StringComparison.Ordinal)
                .Replace("\"Overlays\"", $"\"CertificateFile\": \"{key}\", \"Overlays\"", StringComparison.Ordinal));
            File.SetUnixFileMode(config, mode);
            var logs = new Nat.ListLoggerFactory("node");

            await using var node = OverlayNode.Create(OverlayConfiguration.Load(config), logs);

            var warnings = logs.Lines.Where(l => l.Contains("can be read by its group or others", StringComparison.Ordinal)).ToArray();
            Assert.That(warnings.Any(l => l.Contains(config, StringComparison.Ordinal)), Is.EqualTo(warned), string.Join("\n", logs.Lines));
            Assert.That(warnings.Any(l => l.Contains(key, StringComparison.Ordinal)), Is.False, "the key file the node created is the owner's alone");
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Test]
    public async Task A_node_id_is_derived_from_the_key_and_a_configured_one_must_match_it()
    {
        var directory = Directory.CreateTempSubdirectory("overlay-identity-");
        try
        {
            var key = Path.Combine(directory.FullName, "node.pem");
            string owned;
            using (var identity = Overlay.Links.NodeIdentity.LoadOrCreate(key)) owned = identity.NodeId;
            Assert.That(owned, Does.Match("^[0-9a-f]{32}$"));
            var options = new OverlayNodeOptions { CertificateFile = key, Overlays = [new OverlayOptions { Id = "a" }] };

            await using (var node = OverlayNode.Create(options)) Assert.That(node.NodeId, Is.EqualTo(owned), "taken from the key");
            await using (var node = OverlayNode.Create(options with { NodeId = owned })) Assert.That(node.NodeId, Is.EqualTo(owned), "named and matching");

            // A copied configuration: another node's ID with this key, or any ID with no key at all.
            var copied = Assert.Throws<OverlayConfigurationException>(() => OverlayNode.Create(options with { NodeId = new string('a', 32) }));
            Assert.That(copied!.Key, Is.EqualTo("NodeId"));
            Assert.That(copied.Message, Does.Contain(owned));
            var keyless = Assert.Throws<OverlayConfigurationException>(() => OverlayNode.Create(options with { CertificateFile = null, NodeId = owned }));
            Assert.That(keyless!.Message, Does.Contain("CertificateFile"));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Test]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task A_state_directory_keeps_the_key_so_the_node_id_survives_a_restart()
    {
        var parent = Directory.CreateTempSubdirectory("overlay-state-");
        try
        {
            var state = Path.Combine(parent.FullName, "state", "node1");
            var options = OverlayConfiguration.Parse($$"""{ "StateDirectory": "{{state}}", "Overlays": { "a": {} } }""");

            string first;
            await using (var node = OverlayNode.Create(options)) first = node.NodeId;
            await using (var again = OverlayNode.Create(options)) Assert.That(again.NodeId, Is.EqualTo(first), "the same key, so the same ID");
            await using (var other = OverlayNode.Create(options with { StateDirectory = null })) Assert.That(other.NodeId, Is.Not.EqualTo(first), "no state: a new key each run");

            const UnixFileMode owner = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            Assert.That(File.GetUnixFileMode(state), Is.EqualTo(owner | UnixFileMode.UserExecute), "the directory is the owner's alone");
            Assert.That(File.GetUnixFileMode(Path.Combine(state, "node.pem")), Is.EqualTo(owner), "and so is the key");
        }
        finally
        {
            parent.Delete(recursive: true);
        }
    }
}
