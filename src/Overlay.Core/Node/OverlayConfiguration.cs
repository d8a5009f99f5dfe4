using System.Text.Json;

namespace Overlay;

/// <summary>
/// Reads <see cref="OverlayNodeOptions"/> from a JSON file whose keys follow EdgeVPN's where they mean the
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
public static class OverlayConfiguration
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
        using (document)
        {
            var root = new Node(document.RootElement, "");
            root.Only("NodeId", "Signal", "Stun", "Turn", "CertificateFile", "IgnoredNetInterfaces", "Links", "Overlays");
            var options = new OverlayNodeOptions
            {
                NodeId = root.String("NodeId"),
                Signal = root.Child("Signal") is { } signal ? ReadSignal(signal) : new InProcessSignalingOptions(),
                Stun = root.Strings("Stun") ?? [],
                Turn = root.Array("Turn")?.Select(ReadTurn).ToArray() ?? [],
                CertificateFile = root.String("CertificateFile"),
                IgnoredNetInterfaces = root.Strings("IgnoredNetInterfaces") ?? [],
                Links = root.Child("Links") is { } links ? ReadLinks(links) : new LinkTimings(),
                Overlays = root.Child("Overlays")?.Members().Select(ReadOverlay).ToArray()
                    ?? throw new OverlayConfigurationException("Overlays", "is required"),
            };
            options.Validate();
            return options;
        }
    }

    private static SignalingOptions ReadSignal(Node signal)
    {
        signal.Only("HostAddress", "Port", "Username", "Password", "AuthenticationMethod", "CaFile", "PinnedCertificateSha256", "ClientCertificateFile");
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
            "MaxLearnedAddresses", "MaxLocalAddresses", "Groups");
        var defaults = new OverlayOptions { Id = overlay.Name };
        var device = overlay.Child("NetDevice");
        device?.Only("Name", "IP4", "PrefixLen", "IP6", "MTU", "MAC", "Offload");
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
            },
            MinSuccessors = overlay.Int("MinSuccessors") ?? defaults.MinSuccessors,
            MaxLongDistEdges = overlay.Int("MaxLongDistEdges"),
            MaxOnDemandEdges = overlay.Int("MaxOnDemandEdges") ?? defaults.MaxOnDemandEdges,
            MaxIncomingEdges = overlay.Int("MaxIncomingEdges") ?? defaults.MaxIncomingEdges,
            StaticEdges = overlay.Strings("StaticEdges") ?? [],
            Groups = overlay.Strings("Groups") ?? [],
            MaxLearnedAddresses = overlay.Int("MaxLearnedAddresses") ?? defaults.MaxLearnedAddresses,
            MaxLocalAddresses = overlay.Int("MaxLocalAddresses") ?? defaults.MaxLocalAddresses,
        };
    }

    /// <summary>A JSON object with its key path, reading typed members with errors that name the key.</summary>
    private sealed class Node(JsonElement element, string path)
    {
        public string Name => path[(path.LastIndexOf('.') + 1)..];

        public string KeyOf(string member) => path.Length == 0 ? member : $"{path}.{member}";

        public bool Has(string member) => element.TryGetProperty(member, out _);

        public void Only(params string[] allowed)
        {
            if (element.ValueKind != JsonValueKind.Object)
                throw new OverlayConfigurationException(path.Length == 0 ? "(root)" : path, "must be an object");
            foreach (var property in element.EnumerateObject())
                if (System.Array.IndexOf(allowed, property.Name) < 0)
                    throw new OverlayConfigurationException(KeyOf(property.Name), $"unknown key (known here: {string.Join(", ", allowed)})");
        }

        public Node? Child(string member) => Get(member, JsonValueKind.Object, "an object") is { } e ? new Node(e, KeyOf(member)) : null;

        public IEnumerable<Node> Members()
        {
            foreach (var property in element.EnumerateObject())
                yield return new Node(property.Value, KeyOf(property.Name));
        }

        public IEnumerable<Node>? Array(string member) =>
            Get(member, JsonValueKind.Array, "an array") is { } e ? e.EnumerateArray().Select((item, i) => new Node(item, $"{KeyOf(member)}[{i}]")).ToArray() : null;

        public string? String(string member) => Get(member, JsonValueKind.String, "a string")?.GetString();

        public int? Int(string member)
        {
            if (!element.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            // EdgeVPN wrote some numbers as strings ("Port": "5222"); accept both.
            if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n)) return n;
            if (value.ValueKind == JsonValueKind.String && int.TryParse(value.GetString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out n)) return n;
            throw new OverlayConfigurationException(KeyOf(member), $"must be an integer, not {value.GetRawText()}");
        }

        public bool? Bool(string member)
        {
            if (!element.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            return value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new OverlayConfigurationException(KeyOf(member), $"must be true or false, not {value.GetRawText()}"),
            };
        }

        public TimeSpan? Seconds(string member)
        {
            if (!element.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var seconds) && seconds is > 0 and <= 86_400)
                return TimeSpan.FromSeconds(seconds);
            throw new OverlayConfigurationException(KeyOf(member), $"must be a number of seconds in (0, 86400], not {value.GetRawText()}");
        }

        public IReadOnlyList<string>? Strings(string member)
        {
            if (Get(member, JsonValueKind.Array, "an array of strings") is not { } array) return null;
            var list = new List<string>();
            var i = 0;
            foreach (var item in array.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                    throw new OverlayConfigurationException($"{KeyOf(member)}[{i}]", "must be a string");
                list.Add(item.GetString()!);
                i++;
            }
            return list;
        }

        private JsonElement? Get(string member, JsonValueKind kind, string what)
        {
            if (!element.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind != kind) throw new OverlayConfigurationException(KeyOf(member), $"must be {what}");
            return value;
        }
    }
}
