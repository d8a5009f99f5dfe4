using System.Text.Json;
using Microsoft.Extensions.Configuration;

namespace Overlay;

/// <summary>
/// Reads <see cref="OverlayNodeOptions"/> from a JSON file (or any <see cref="IConfiguration"/> source, <see cref="Read"/>) whose keys follow EdgeVPN's where they mean the
/// same thing. Unknown keys and wrong types are errors naming the key, so a typo never passes silently.
/// The options' properties carry .NET names where EdgeVPN's keys do not: <c>NetDevice.IP4</c> is
/// <see cref="NetDeviceOptions.IPv4Address"/>, <c>PrefixLen</c> <see cref="NetDeviceOptions.PrefixLength"/>,
/// <c>IP6</c> <see cref="NetDeviceOptions.IPv6Address"/>, <c>MTU</c> <see cref="NetDeviceOptions.Mtu"/> and
/// <c>MAC</c> <see cref="NetDeviceOptions.MacAddress"/>; errors name the JSON key.
/// </summary>
/// <example>
/// <code>
/// {
///   "NodeId": "0123456789abcdef0123456789abcdef",
///   "Signal": { "HostAddress": "xmpp.example.org", "Port": 5222, "AuthenticationMethod": "PASSWORD",
///               "Username": "node1@example.org", "Password": "secret", "CaFile": "/etc/overlay/ca.pem" },
///   "Stun": [ "stun.example.org:3478" ],
///   "Turn": [ { "Address": "turn.example.org:3478", "User": "node", "Password": "secret" } ],
///   "CertificateFile": "/var/lib/overlay/node.pem",
///   "Overlays": {
///     "A0FB389": { "NetDevice": { "Name": "ovl0", "IP4": "10.10.0.1", "PrefixLen": 24, "MTU": 1410 },
///                  "MinSuccessors": 2, "MaxLongDistEdges": 4, "MaxOnDemandEdges": 2, "StaticEdges": [] }
///   }
/// }
/// </code>
/// </example>
public static partial class OverlayConfiguration
{
    /// <summary>Reads and validates a configuration file.</summary>
    public static OverlayNodeOptions Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OverlayConfigurationException("(file)", $"cannot read '{path}': {e.Message}", e);
        }
        return Parse(text) with { SourceFile = path };
    }

    /// <summary>Parses and validates configuration JSON.</summary>
    public static OverlayNodeOptions Parse(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new OverlayConfigurationException("(file)", $"not valid JSON: {e.Message}", e);
        }
        using (document) return ReadOptions(new JsonNode(document.RootElement, ""));
    }

    /// <summary>
    /// Reads and validates the same keys from any <see cref="IConfiguration"/> source: an <c>appsettings.json</c>
    /// section, environment variables (<c>Overlay__Signal__Password</c>), the command line. Keys are matched without
    /// regard to case, as configuration does; unknown keys and wrong types are errors naming the key. Values are text
    /// there, so <c>"Port": "5222"</c>, <c>"Offload": "false"</c> and <c>"DeadPeerTimeout": "8"</c> are read as typed.
    /// </summary>
    /// <param name="configuration">The section holding the node's keys (for example <c>configuration.GetSection("Overlay")</c>).</param>
    /// <exception cref="OverlayConfigurationException">A setting is missing or invalid; the exception names it.</exception>
    public static OverlayNodeOptions Read(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return ReadOptions(new SectionNode(configuration, ""));
    }

    private static OverlayNodeOptions ReadOptions(Node root)
    {
        root.Only("NodeId", "Signal", "Stun", "Turn", "CertificateFile", "StateDirectory", "IgnoredNetInterfaces", "Links", "Overlays",
            "DataPath");
        var options = new OverlayNodeOptions
        {
            NodeId = root.String("NodeId"),
            Signal = root.Child("Signal") is { } signal ? ReadSignal(signal) : new InProcessSignalingOptions(),
            Stun = root.Strings("Stun") ?? [],
            Turn = root.Array("Turn")?.Select(ReadTurn).ToArray() ?? [],
            CertificateFile = root.String("CertificateFile"),
            StateDirectory = root.String("StateDirectory"),
            IgnoredNetInterfaces = root.Strings("IgnoredNetInterfaces") ?? [],
            Links = root.Child("Links") is { } links ? ReadLinks(links) : new LinkTimings(),
            DataPath = root.Child("DataPath") is { } dataPath ? ReadDataPath(dataPath) : new DataPathOptions(),
            Overlays = root.Child("Overlays")?.Members().Select(ReadOverlay).ToArray()
                ?? throw new OverlayConfigurationException("Overlays", "is required"),
        };
        options.Validate();
        return options;
    }

    private static SignalingOptions ReadSignal(Node signal)
    {
        var d = new XmppSignalingOptions { HostAddress = "", Username = "" };
        signal.Only("HostAddress", "Port", "Username", "Password", "AuthenticationMethod", "CaFile", "PinnedCertificateSha256", "ClientCertificateFile",
            nameof(d.PingInterval), nameof(d.PingTimeout), nameof(d.ConnectTimeout), nameof(d.ReconnectMinDelay), nameof(d.ReconnectMaxDelay));
        var method = signal.String("AuthenticationMethod")?.ToUpperInvariant() switch
        {
            null or "PASSWORD" => XmppAuthenticationMethod.Password,
            "X509" => XmppAuthenticationMethod.X509,
            var other => throw new OverlayConfigurationException(signal.KeyOf("AuthenticationMethod"), $"'{other}' is neither PASSWORD nor X509"),
        };
        return new XmppSignalingOptions
        {
            HostAddress = signal.String("HostAddress") ?? throw new OverlayConfigurationException(signal.KeyOf("HostAddress"), "is required"),
            Port = signal.Int("Port"),
            Username = signal.String("Username") ?? throw new OverlayConfigurationException(signal.KeyOf("Username"), "is required"),
            Password = signal.String("Password"),
            AuthenticationMethod = method,
            CaFile = signal.String("CaFile"),
            PinnedCertificateSha256 = signal.String("PinnedCertificateSha256"),
            ClientCertificateFile = signal.String("ClientCertificateFile"),
            PingInterval = signal.Seconds(nameof(d.PingInterval)) ?? d.PingInterval,
            PingTimeout = signal.Seconds(nameof(d.PingTimeout)) ?? d.PingTimeout,
            ConnectTimeout = signal.Seconds(nameof(d.ConnectTimeout)) ?? d.ConnectTimeout,
            ReconnectMinDelay = signal.Seconds(nameof(d.ReconnectMinDelay)) ?? d.ReconnectMinDelay,
            ReconnectMaxDelay = signal.Seconds(nameof(d.ReconnectMaxDelay)) ?? d.ReconnectMaxDelay,
        };
    }

    /// <summary>Link timings in seconds, e.g. <c>"Links": { "KeepaliveInterval": 2, "DeadPeerTimeout": 8 }</c>.</summary>
    private static LinkTimings ReadLinks(Node links)
    {
        var d = new LinkTimings();
        links.Only(nameof(d.RequestTimeout), nameof(d.SetupTimeout), nameof(d.KeepaliveInterval), nameof(d.DeadPeerTimeout),
            nameof(d.RestartInterval), nameof(d.RecoveryTimeout), nameof(d.TickInterval));
        return new LinkTimings
        {
            RequestTimeout = links.Seconds(nameof(d.RequestTimeout)) ?? d.RequestTimeout,
            SetupTimeout = links.Seconds(nameof(d.SetupTimeout)) ?? d.SetupTimeout,
            KeepaliveInterval = links.Seconds(nameof(d.KeepaliveInterval)) ?? d.KeepaliveInterval,
            DeadPeerTimeout = links.Seconds(nameof(d.DeadPeerTimeout)) ?? d.DeadPeerTimeout,
            RestartInterval = links.Seconds(nameof(d.RestartInterval)) ?? d.RestartInterval,
            RecoveryTimeout = links.Seconds(nameof(d.RecoveryTimeout)) ?? d.RecoveryTimeout,
            TickInterval = links.Seconds(nameof(d.TickInterval)) ?? d.TickInterval,
        };
    }

    /// <summary>How frames move, e.g. <c>"DataPath": { "EventLoops": 2 }</c>.</summary>
    private static DataPathOptions ReadDataPath(Node dataPath)
    {
        var d = new DataPathOptions();
        dataPath.Only(nameof(d.EventLoops), nameof(d.UdpSegmentationOffload));
        return new DataPathOptions
        {
            EventLoops = dataPath.Int(nameof(d.EventLoops)) ?? d.EventLoops,
            UdpSegmentationOffload = dataPath.Bool(nameof(d.UdpSegmentationOffload)) ?? d.UdpSegmentationOffload,
        };
    }

    private static TurnServerOptions ReadTurn(Node turn)
    {
        turn.Only("Address", "User", "Password", "Transport", "CaFile");
        return new TurnServerOptions(
            turn.String("Address") ?? throw new OverlayConfigurationException(turn.KeyOf("Address"), "is required"),
            turn.String("User") ?? throw new OverlayConfigurationException(turn.KeyOf("User"), "is required"),
            turn.String("Password") ?? throw new OverlayConfigurationException(turn.KeyOf("Password"), "is required"))
        {
            Transport = turn.String("Transport"),
            CaFile = turn.String("CaFile"),
        };
    }

    private static OverlayOptions ReadOverlay(Node overlay)
    {
        overlay.Only("NetDevice", "MinSuccessors", "MaxLongDistEdges", "MaxOnDemandEdges", "MaxIncomingEdges", "StaticEdges",
            "MaxLearnedAddresses", "MaxLocalAddresses", "Groups", "TrustedCertificates");
        var defaults = new OverlayOptions { Id = overlay.Name };
        var device = overlay.Child("NetDevice");
        device?.Only("Name", "IP4", "PrefixLen", "IP6", "MTU", "MAC", "Offload",
            "Userspace");
        var netDefaults = new NetDeviceOptions();
        return defaults with
        {
            NetDevice = device is null ? netDefaults : new NetDeviceOptions
            {
                Name = device.String("Name"),
                IPv4Address = device.String("IP4"),
                PrefixLength = device.Int("PrefixLen") ?? netDefaults.PrefixLength,
                IPv6Address = device.String("IP6"),
                Mtu = device.Int("MTU") ?? netDefaults.Mtu,
                MacAddress = device.String("MAC"),
                Offload = device.Bool("Offload") ?? netDefaults.Offload,
                UserspaceStack = device.Bool("Userspace") ?? netDefaults.UserspaceStack,
            },
            MinSuccessors = overlay.Int("MinSuccessors") ?? defaults.MinSuccessors,
            MaxLongDistEdges = overlay.Int("MaxLongDistEdges"),
            MaxOnDemandEdges = overlay.Int("MaxOnDemandEdges") ?? defaults.MaxOnDemandEdges,
            MaxIncomingEdges = overlay.Int("MaxIncomingEdges") ?? defaults.MaxIncomingEdges,
            StaticEdges = overlay.Strings("StaticEdges") ?? [],
            Groups = overlay.Strings("Groups") ?? [],
            TrustedCertificates = overlay.Strings("TrustedCertificates") ?? [],
            MaxLearnedAddresses = overlay.Int("MaxLearnedAddresses") ?? defaults.MaxLearnedAddresses,
            MaxLocalAddresses = overlay.Int("MaxLocalAddresses") ?? defaults.MaxLocalAddresses,
        };
    }
}
