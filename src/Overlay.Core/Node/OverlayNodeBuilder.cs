using Overlay.Signaling.InProcess;

namespace Overlay;

/// <summary>
/// Fluent construction of a node's options:
/// <c>.WithNodeId(..).UseXmpp(..).UseStun(..).UseTurn(..).JoinOverlay("id", o => o.WithTap("ovl0").WithAddress("10.10.0.1/24"))</c>.
/// Settings are checked once, when the options are built, with errors naming the setting.
/// </summary>
public sealed class OverlayNodeBuilder
{
    private OverlayNodeOptions _options;
    private readonly List<OverlayOptions> _overlays = [];
    private readonly List<string> _stun = [];
    private readonly List<TurnServerOptions> _turn = [];
    private Links.NodeIdentity? _identity;
    private TimeProvider? _time;
    private System.Diagnostics.Metrics.IMeterFactory? _meterFactory;

    /// <summary>Starts from <paramref name="options"/> (for example read by <see cref="OverlayConfiguration"/>), or from defaults.</summary>
    public OverlayNodeBuilder(OverlayNodeOptions? options = null)
    {
        _options = options ?? new OverlayNodeOptions();
        _overlays.AddRange(_options.Overlays);
        _stun.AddRange(_options.Stun);
        _turn.AddRange(_options.Turn);
    }

    /// <summary>Sets the node's 128-bit ID (32 lower-case hex characters).</summary>
    public OverlayNodeBuilder WithNodeId(string nodeId)
    {
        _options = _options with { NodeId = nodeId };
        return this;
    }

    /// <summary>Keeps the node's certificate in <paramref name="path"/>, creating it on first use.</summary>
    public OverlayNodeBuilder WithCertificateFile(string path)
    {
        _options = _options with { CertificateFile = path };
        return this;
    }

    /// <summary>Keeps the node's state (its key, and so its ID) in <paramref name="path"/>, created owner-only on first use.</summary>
    public OverlayNodeBuilder WithStateDirectory(string path)
    {
        _options = _options with { StateDirectory = path };
        return this;
    }

    /// <summary>Creates the node's instruments (<see cref="OverlayNode.MeterName"/>) through <paramref name="meterFactory"/> instead of a meter of its own.</summary>
    public OverlayNodeBuilder WithMeterFactory(System.Diagnostics.Metrics.IMeterFactory meterFactory)
    {
        _meterFactory = meterFactory ?? throw new ArgumentNullException(nameof(meterFactory));
        return this;
    }

    /// <summary>Signals through an XMPP server.</summary>
    public OverlayNodeBuilder UseXmpp(XmppSignalingOptions xmpp)
    {
        _options = _options with { Signal = xmpp };
        return this;
    }

    /// <summary>Signals through an XMPP server with a password.</summary>
    public OverlayNodeBuilder UseXmpp(string hostAddress, string username, string password, int? port = null, string? caFile = null) =>
        UseXmpp(new XmppSignalingOptions { HostAddress = hostAddress, Username = username, Password = password, Port = port, CaFile = caFile });

    /// <summary>Signals through <paramref name="hub"/>, which the nodes of one process that should meet share.</summary>
    public OverlayNodeBuilder UseInProcessSignaling(InProcessSignalingHub hub)
    {
        ArgumentNullException.ThrowIfNull(hub);
        _options = _options with { Signal = new InProcessSignalingOptions { Hub = hub } };
        return this;
    }

    /// <summary>Adds a STUN server (host:port).</summary>
    public OverlayNodeBuilder UseStun(string hostAndPort)
    {
        _stun.Add(hostAndPort);
        return this;
    }

    /// <summary>Adds a TURN server with long-term credentials.</summary>
    public OverlayNodeBuilder UseTurn(string hostAndPort, string user, string password)
    {
        _turn.Add(new TurnServerOptions(hostAndPort, user, password));
        return this;
    }

    /// <summary>Never gathers ICE candidates on the named interface.</summary>
    public OverlayNodeBuilder IgnoreInterface(string name)
    {
        _options = _options with { IgnoredNetInterfaces = [.. _options.IgnoredNetInterfaces, name] };
        return this;
    }

    /// <summary>Joins overlay <paramref name="id"/>, configured by <paramref name="configure"/>.</summary>
    public OverlayNodeBuilder JoinOverlay(string id, Action<OverlayBuilder>? configure = null)
    {
        var overlay = new OverlayBuilder(id);
        configure?.Invoke(overlay);
        _overlays.Add(overlay.Options);
        return this;
    }

    /// <summary>
    /// Changes overlay <paramref name="id"/>, already joined (for example read from configuration), or joins it: an
    /// application may give an overlay from a configuration file its own device (<see cref="OverlayBuilder.WithDevice"/>).
    /// </summary>
    public OverlayNodeBuilder ConfigureOverlay(string id, Action<OverlayBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var index = _overlays.FindIndex(o => o.Id == id);
        if (index < 0) return JoinOverlay(id, configure);
        var overlay = new OverlayBuilder(_overlays[index]);
        configure(overlay);
        _overlays[index] = overlay.Options;
        return this;
    }

    /// <summary>Builds the node (not started) from the validated options.</summary>
    /// <param name="loggerFactory">Where the node logs; nowhere when null.</param>
    /// <exception cref="OverlayConfigurationException">A setting is invalid; the exception names it.</exception>
    public OverlayNode Build(Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory = null) =>
        OverlayNode.Create(BuildOptions(), loggerFactory, _time, _identity, _meterFactory);

    /// <summary>Uses a certificate the host supplies (with its private key) as the node's identity.</summary>
    public OverlayNodeBuilder WithIdentity(Links.NodeIdentity identity)
    {
        _identity = identity ?? throw new ArgumentNullException(nameof(identity));
        return this;
    }

    /// <summary>Sets link setup, keepalive and recovery timings.</summary>
    public OverlayNodeBuilder WithLinkTimings(LinkTimings timings)
    {
        _options = _options with { Links = timings ?? throw new ArgumentNullException(nameof(timings)) };
        return this;
    }

    /// <summary>Sets how frames move through the node (for example, UDP segmentation offload off).</summary>
    public OverlayNodeBuilder WithDataPath(DataPathOptions dataPath)
    {
        _options = _options with { DataPath = dataPath ?? throw new ArgumentNullException(nameof(dataPath)) };
        return this;
    }

    /// <summary>Runs the node on <paramref name="time"/> instead of the system clock.</summary>
    public OverlayNodeBuilder WithTimeProvider(TimeProvider time)
    {
        _time = time ?? throw new ArgumentNullException(nameof(time));
        return this;
    }

    /// <summary>Produces the validated options.</summary>
    public OverlayNodeOptions BuildOptions()
    {
        var options = _options with { Overlays = _overlays.ToArray(), Stun = _stun.ToArray(), Turn = _turn.ToArray() };
        options.Validate();
        return options;
    }
}

/// <summary>Fluent settings of one overlay.</summary>
public sealed class OverlayBuilder
{
    internal OverlayBuilder(string id) => Options = new OverlayOptions { Id = id };

    internal OverlayBuilder(OverlayOptions options) => Options = options;

    internal OverlayOptions Options { get; private set; }

    /// <summary>Uses a Linux TAP device named <paramref name="name"/> (needs CAP_NET_ADMIN).</summary>
    public OverlayBuilder WithTap(string name) => Device(d => d with { Name = name, UserspaceStack = false });

    /// <summary>Uses an in-memory device instead of a TAP (demo, tests, no root).</summary>
    public OverlayBuilder WithInMemoryDevice() => Device(d => d with { Name = null, UserspaceStack = false });

    /// <summary>
    /// Puts a TCP/IP stack in the process on the overlay instead of a TAP (no root): dial and listen through
    /// <see cref="OverlayNode.Network"/>. Give it an address with <see cref="WithAddress"/>.
    /// </summary>
    public OverlayBuilder WithUserspaceStack() => Device(d => d with { Name = null, UserspaceStack = true });

    /// <summary>
    /// Uses the application's own device as the overlay's virtual NIC (a batching device, a bridge to a VM or container);
    /// the node disposes of it when it stops.
    /// </summary>
    public OverlayBuilder WithDevice(Tap.IEthernetDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Options = Options with { Device = device };
        return this;
    }

    /// <summary>Sets an IPv4 (a.b.c.d/len) or IPv6 (x::y/len) address of the node on the overlay.</summary>
    public OverlayBuilder WithAddress(string cidr)
    {
        ArgumentNullException.ThrowIfNull(cidr);
        if (cidr.Contains(':', StringComparison.Ordinal)) return Device(d => d with { IPv6Address = cidr });
        var slash = cidr.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0) return Device(d => d with { IPv4Address = cidr });
        var prefix = int.TryParse(cidr.AsSpan(slash + 1), out var p) ? p : -1;
        return Device(d => d with { IPv4Address = cidr[..slash], PrefixLength = prefix });
    }

    /// <summary>Sets the overlay MTU.</summary>
    public OverlayBuilder WithMtu(int mtu) => Device(d => d with { Mtu = mtu });

    /// <summary>Sets the node's MAC address on the overlay.</summary>
    public OverlayBuilder WithMacAddress(string macAddress) => Device(d => d with { MacAddress = macAddress });

    /// <summary>Sets the topology limits.</summary>
    public OverlayBuilder WithTopology(int? minSuccessors = null, int? maxLongDistEdges = null, int? maxOnDemandEdges = null, int? maxIncomingEdges = null)
    {
        Options = Options with
        {
            MinSuccessors = minSuccessors ?? Options.MinSuccessors,
            MaxLongDistEdges = maxLongDistEdges ?? Options.MaxLongDistEdges,
            MaxOnDemandEdges = maxOnDemandEdges ?? Options.MaxOnDemandEdges,
            MaxIncomingEdges = maxIncomingEdges ?? Options.MaxIncomingEdges,
        };
        return this;
    }

    /// <summary>Sets how many addresses the overlay's switch learns from other members and from its own host at most.</summary>
    public OverlayBuilder WithSwitchLimits(int? maxLearnedAddresses = null, int? maxLocalAddresses = null)
    {
        Options = Options with
        {
            MaxLearnedAddresses = maxLearnedAddresses ?? Options.MaxLearnedAddresses,
            MaxLocalAddresses = maxLocalAddresses ?? Options.MaxLocalAddresses,
        };
        return this;
    }

    /// <summary>Always links to the node <paramref name="nodeId"/>.</summary>
    public OverlayBuilder WithStaticEdge(string nodeId)
    {
        Options = Options with { StaticEdges = [.. Options.StaticEdges, nodeId] };
        return this;
    }

    /// <summary>Only contacts in these roster groups are members of the overlay (see <see cref="OverlayOptions.Groups"/>).</summary>
    public OverlayBuilder WithGroups(params string[] groups)
    {
        Options = Options with { Groups = [.. Options.Groups, .. groups] };
        return this;
    }

    /// <summary>
    /// Trusts only peers whose certificates these PEM files' CAs signed, or whose keys they or the pins name (see
    /// <see cref="OverlayOptions.TrustedCertificates"/>), whatever signaling says.
    /// </summary>
    public OverlayBuilder WithTrustedCertificates(params string[] pemFilesOrKeyPins)
    {
        Options = Options with { TrustedCertificates = [.. Options.TrustedCertificates, .. pemFilesOrKeyPins] };
        return this;
    }

    private OverlayBuilder Device(Func<NetDeviceOptions, NetDeviceOptions> change)
    {
        Options = Options with { NetDevice = change(Options.NetDevice) };
        return this;
    }
}
