using System.Net;
using System.Net.NetworkInformation;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Overlay.Engine;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Stack;
using Overlay.Switching;
using Overlay.Tap;
using Overlay.Tap.InMemory;
using Overlay.Tap.Linux;

namespace Overlay;

/// <summary>
/// A member of one or more overlays: it signals its presence, forms a Symphony ring of encrypted TinCan links with
/// the other members, and switches Ethernet frames between its virtual NIC and those links.
/// <code>
/// await using var node = OverlayNode.Create()
///     .UseXmpp("xmpp.example.net", "node1@example.net", "secret")
///     .UseStun("stun.example.net:3478")
///     .JoinOverlay("ovl1", o => o.WithTap("ovl0").WithAddress("10.10.0.1/24"))
///     .Build();
/// await node.StartAsync();
/// </code>
/// </summary>
public sealed partial class OverlayNode : IAsyncDisposable
{
    private const int WatcherCapacity = 1024;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly bool _ownsIdentity;
    private readonly Lock _gate = new();
    private readonly List<Channel<LinkEvent>> _linkWatchers = [];
    private readonly CancellationTokenSource _lifetime = new();
    private Task? _warmUp;
    private readonly Dictionary<string, OverlayEngine> _engines = new(StringComparer.Ordinal);
    private readonly List<TrustAnchor?> _trust = []; // per overlay, in Options.Overlays' order
    private OverlayNetwork[] _overlays = [];
    private SignalingChannelBase? _signaling;
    private Task? _reader;
    private int _started;
    private int _disposed;
    private Transport.EventLoopGroup? _loops;
    private Nat.NatScheduler? _iceScheduler; // one timer for every link's ICE agent (consent checks, retransmissions)
    private readonly TaskCompletionSource _startedOnce = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly NodeTelemetry _telemetry;

    /// <summary>The name of the node's <see cref="System.Diagnostics.Metrics.Meter"/> (README "Metrics" lists its instruments).</summary>
    public const string MeterName = "Overlay";

    /// <summary>The name of the <see cref="System.Diagnostics.ActivitySource"/> of link setups (span <c>overlay.link.setup</c>).</summary>
    public const string ActivitySourceName = "Overlay";

    private OverlayNode(OverlayNodeOptions options, ILoggerFactory? loggerFactory, TimeProvider? time, NodeIdentity? identity,
        System.Diagnostics.Metrics.IMeterFactory? meterFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger<OverlayNode>();
        _time = time ?? TimeProvider.System;
        _ownsIdentity = identity is null;
        if (identity is null && options.StateDirectory is { } state) CreateStateDirectory(state);
        Identity = identity ?? (options.KeyFile is { } file ? NodeIdentity.LoadOrCreate(file) : NodeIdentity.CreateEphemeral());
        // A node ID belongs to a key: it is derived from the identity's, and a configured one must be that one.
        NodeId = Identity.NodeId;
        if (options.NodeId is { } configured && configured != NodeId)
        {
            if (_ownsIdentity) Identity.Dispose();
            throw new OverlayConfigurationException("NodeId", options.CertificateFile is null
                ? $"'{configured}' cannot be this node's: a node ID is derived from the node's key, so set CertificateFile to the key that owns it, or leave NodeId out (this run's key gives {NodeId})"
                : $"'{configured}' does not belong to the key in '{options.CertificateFile}', which owns node ID {NodeId}: leave NodeId out, or use the key that owns it");
        }
        WarnAboutExposedSecrets(options);
        _telemetry = new NodeTelemetry(NodeId, meterFactory, () => Overlays, () => _signaling);
    }

    /// <summary>The state directory is created owner-only; one that exists is used as it is (its key file is owner-only).</summary>
    private static void CreateStateDirectory(string path)
    {
        try
        {
            if (Directory.Exists(path)) return;
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(path);
            else Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OverlayConfigurationException("StateDirectory", $"cannot create '{path}': {e.Message}", e);
        }
    }

    /// <summary>A file holding a password or a private key that the group or others may read gets a warning (it still runs).</summary>
    private void WarnAboutExposedSecrets(OverlayNodeOptions options)
    {
        if (OperatingSystem.IsWindows()) return;
        var xmpp = options.Signal as XmppSignalingOptions;
        var configHoldsSecret = options.Turn.Count > 0 || !string.IsNullOrEmpty(xmpp?.Password);
        (string? Path, string What)[] files =
        [
            (configHoldsSecret ? options.SourceFile : null, "configuration with passwords"),
            (_ownsIdentity ? options.KeyFile : null, "the node's private key"),
            (xmpp?.ClientCertificateFile, "the XMPP client key"),
        ];
        foreach (var (path, what) in files)
        {
            if (path is null) continue;
            UnixFileMode mode;
            try { mode = File.GetUnixFileMode(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; } // reported where it is read
            const UnixFileMode exposed = UnixFileMode.GroupRead | UnixFileMode.OtherRead;
            if ((mode & exposed) != 0) LogSecretExposed(path, what, Convert.ToString((int)mode, 8));
        }
    }

    /// <summary>Starts a fluent description of a node; finish with <see cref="OverlayNodeBuilder.Build"/>.</summary>
    public static OverlayNodeBuilder Create() => new();

    /// <summary>Creates a node from options (for example read by <see cref="OverlayConfiguration"/>); nothing runs until <see cref="StartAsync"/>.</summary>
    /// <param name="options">The node's settings; validated here.</param>
    /// <param name="loggerFactory">Where the node logs; nowhere when null.</param>
    /// <param name="time">The clock (tests may supply their own).</param>
    /// <param name="identity">The node's certificate and key; when null, loaded from (or created at) <see cref="OverlayNodeOptions.CertificateFile"/>
    /// or the <see cref="OverlayNodeOptions.StateDirectory"/>, or ephemeral.</param>
    /// <param name="meterFactory">Creates the node's meter (<see cref="MeterName"/>); when null, the node keeps a meter of its own.</param>
    /// <exception cref="OverlayConfigurationException">A setting is invalid; the exception names it.</exception>
    public static OverlayNode Create(OverlayNodeOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? time = null, NodeIdentity? identity = null,
        System.Diagnostics.Metrics.IMeterFactory? meterFactory = null) =>
        new(options, loggerFactory, time, identity, meterFactory);

    /// <summary>The node's ID (32 lower-case hex characters).</summary>
    public string NodeId { get; }

    /// <summary>The settings the node runs with.</summary>
    public OverlayNodeOptions Options { get; }

    /// <summary>The node's long-lived identity; peers check its fingerprint during each link's handshake.</summary>
    public NodeIdentity Identity { get; }

    /// <summary>The overlays, once started.</summary>
    public IReadOnlyList<OverlayNetwork> Overlays => Volatile.Read(ref _overlays);

    /// <summary>The signaling connection's state.</summary>
    public SignalingState SignalingState => _signaling?.State ?? SignalingState.Disconnected;

    /// <summary>Raised when a member joins or leaves one of the node's overlays (from a signaling thread).</summary>
    public event EventHandler<PeerEvent>? PeerChanged;

    /// <summary>Raised on every link change (from the overlay's control thread; do not block it).</summary>
    public event EventHandler<LinkEvent>? LinkChanged;

    /// <summary>
    /// Raised when the signaling connection's state changes, and on each failed reconnection attempt (from a signaling
    /// thread; do not block it). Links whose keepalives pass go on while signaling is away.
    /// </summary>
    public event EventHandler<SignalingEvent>? SignalingChanged;

    /// <summary>One overlay by ID.</summary>
    /// <exception cref="KeyNotFoundException">The node does not serve it (or is not started).</exception>
    public OverlayNetwork GetOverlay(string overlayId) =>
        Overlays.FirstOrDefault(o => o.Id == overlayId) ?? throw new KeyNotFoundException($"this node does not serve overlay '{overlayId}' (or is not started)");

    /// <summary>
    /// Opens the virtual NICs, connects to signaling and starts forming links. Returns once the node is announced;
    /// links come up in the background (watch <see cref="LinkChanged"/> or <see cref="WatchLinksAsync"/>).
    /// </summary>
    /// <exception cref="TapDeviceException">A TAP device could not be created (no CAP_NET_ADMIN, no /dev/net/tun, name in use).</exception>
    /// <exception cref="SignalingException">The signaling server could not be reached or refused the credentials.</exception>
    /// <exception cref="PlatformNotSupportedException">Not Linux on a 64-bit process: the data path runs on epoll.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("StartAsync was already called");
        var devices = new List<IEthernetDevice>();
        // While signaling logs in, the DTLS handshake's code is compiled, so that it does not delay the first link.
        _warmUp = Task.Run(() => DtlsHandshake.WarmUpAsync(Identity, _lifetime.Token), CancellationToken.None);
        try
        {
            LoadTrustAnchors();
            var ice = await BuildIceOptionsAsync(cancellationToken).ConfigureAwait(false);
            foreach (var overlay in Options.Overlays) devices.Add(OpenDevice(overlay));

            var signaling = SignalingChannels.Create(Options.Signal, NodeId, [.. Options.Overlays.Select(o => o.Id)], _loggerFactory, _time,
                Options.Overlays.ToDictionary(o => o.Id, o => o.Groups, StringComparer.Ordinal));
            _signaling = signaling;
            _loops = Transport.EventLoopGroup.Start("overlay io " + NodeId[..8], Options.DataPath.EventLoops);
            var context = new NodeContext
            {
                NodeId = NodeId, Self = Switching.NodeId.Parse(NodeId).Value, Identity = Identity, Signaling = signaling, Ice = ice,
                Timings = Options.Links, Time = _time, LoggerFactory = _loggerFactory, RaiseLink = RaiseLink, Loops = _loops,
                DataPath = Options.DataPath, Telemetry = _telemetry,
            };
            var paths = context.Paths;
            _warmUp = Task.WhenAll(_warmUp, Task.Run(() => WarmUpPathAsync(paths), CancellationToken.None));
            var networks = new List<OverlayNetwork>();
            for (var i = 0; i < Options.Overlays.Count; i++)
            {
                var engine = new OverlayEngine(context, Options.Overlays[i], devices[i], _trust[i]);
                _engines[engine.Id] = engine;
                networks.Add(new OverlayNetwork(engine));
            }
            signaling.PeerChanged += OnPeerChanged;
            signaling.StateChanged += OnSignalingState;
            await signaling.ConnectAsync(cancellationToken).ConfigureAwait(false);
            _reader = Task.Run(() => ReadSignalsAsync(signaling, _lifetime.Token), CancellationToken.None);
            foreach (var engine in _engines.Values) engine.Start(signaling.GetPeers(engine.Id).Keys);
            Volatile.Write(ref _overlays, [.. networks]);
            LogStarted(NodeId, string.Join(", ", Options.Overlays.Select(o => o.Id)), Identity.Fingerprint.ToString());
            _startedOnce.TrySetResult();
        }
        catch (Exception e)
        {
            if (_startedOnce.TrySetException(e)) _ = _startedOnce.Task.Exception; // observed: WaitUntilReadyAsync rethrows it
            if (_engines.Count == 0)
                foreach (var device in devices) await device.DisposeAsync().ConfigureAwait(false);
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Makes a link path (a socket on the event loop, host candidates, TURN clients) and closes it at once, so that the
    /// first link's does not wait for that code to be compiled. Errors are ignored: the first link reports its own.
    /// </summary>
    private static async Task WarmUpPathAsync(ILinkPathFactory paths)
    {
        try
        {
            await paths.Create(IceRole.Controlling).DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // no socket now: nothing to warm up
        }
    }

    /// <summary>
    /// Reads each overlay's trust anchor, and checks that it trusts this node's own certificate: otherwise every peer would
    /// refuse every link, which is a configuration error better said once at start.
    /// </summary>
    private void LoadTrustAnchors()
    {
        foreach (var overlay in Options.Overlays)
        {
            var key = $"Overlays.{overlay.Id}.TrustedCertificates";
            var anchor = TrustAnchor.Load(overlay.TrustedCertificates, key);
            _trust.Add(anchor);
            if (anchor?.Refuse(Identity.Certificate, Identity.Chain, _time.GetUtcNow()) is { } refusal)
                throw new OverlayConfigurationException(key, $"does not trust this node's own certificate, so every peer would refuse it: {refusal}");
        }
    }

    private async Task<IceOptions> BuildIceOptionsAsync(CancellationToken cancellationToken)
    {
        var stun = new List<IPEndPoint>();
        foreach (var server in Options.Stun) stun.AddRange(await ResolveAsync(server, cancellationToken).ConfigureAwait(false));
        var turn = new List<Nat.Turn.TurnServer>();
        foreach (var server in Options.Turn)
        {
            // A name in the address is what a TLS server's certificate must carry; an IP literal, the address itself.
            var host = server.HostPort[..server.HostPort.LastIndexOf(':')].Trim('[', ']');
            System.Security.Cryptography.X509Certificates.X509Certificate2Collection? roots = null;
            if (server.CaFile is not null)
            {
                roots = [];
                roots.ImportFromPemFile(server.CaFile);
            }
            foreach (var endpoint in await ResolveAsync(server.HostPort, cancellationToken).ConfigureAwait(false))
                foreach (var transport in server.Transports)
                    turn.Add(new Nat.Turn.TurnServer(endpoint, server.User, server.Password)
                    {
                        Transport = transport, ServerName = IPAddress.TryParse(host, out _) ? null : host, TrustedRoots = roots,
                    });
        }
        return new IceOptions
        {
            StunServers = stun,
            TurnServers = turn,
            // Never offer the overlays' own NICs as paths: a link must not try to run through itself.
            ExcludedInterfaces = [.. Options.IgnoredNetInterfaces, .. Options.Overlays.Select(o => o.NetDevice.Name).OfType<string>()],
            ConnectTimeout = Options.Links.SetupTimeout,
            LoggerFactory = _loggerFactory,
            Scheduler = _iceScheduler ??= new Nat.NatScheduler(TimeProvider.System), // IceOptions' clock
        };
    }

    private async Task<IReadOnlyList<IPEndPoint>> ResolveAsync(string hostPort, CancellationToken cancellationToken)
    {
        if (IPEndPoint.TryParse(hostPort, out var literal)) return [literal];
        var colon = hostPort.LastIndexOf(':');
        var port = int.Parse(hostPort.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var addresses = await Dns.GetHostAddressesAsync(hostPort[..colon], cancellationToken).ConfigureAwait(false);
            return [.. addresses.Select(a => new IPEndPoint(a, port))];
        }
        catch (System.Net.Sockets.SocketException e)
        {
            LogUnresolved(hostPort, e.Message);
            return [];
        }
    }

    /// <summary>Tests only: makes an overlay's NIC instead of the options (a TAP in a test's namespace, a lossy wrapper).</summary>
    internal Func<OverlayOptions, IEthernetDevice?>? DeviceFactory { get; set; }

    private IEthernetDevice OpenDevice(OverlayOptions overlay)
    {
        if (DeviceFactory?.Invoke(overlay) is { } made) return made;
        var net = overlay.NetDevice;
        var mac = net.MacAddress is { } text ? PhysicalAddress.Parse(text.Replace(':', '-')) : OverlayEngine.DeriveMac(NodeId, overlay.Id);
        if (overlay.Device is { } own) return own;
        if (net.UserspaceStack) return new UserspaceStack($"stack-{overlay.Id}", StackOptions(net, mac), _time);
        if (net.Name is null) return new InMemoryEthernetDevice($"mem-{overlay.Id}", mac, net.Mtu);
        var addresses = new List<InterfaceAddress>();
        if (net.IPv4Address is { } ip4) addresses.Add(new InterfaceAddress(IPAddress.Parse(ip4), net.PrefixLength));
        if (net.IPv6Address is { } ip6) addresses.Add(InterfaceAddress.Parse(ip6));
        // One queue per event loop: loop i reads queue i and writes the frames of its links into it.
        return TapDevice.Create(new TapDeviceOptions
        {
            Name = net.Name, MacAddress = mac, Mtu = net.Mtu, Addresses = addresses, Offload = net.Offload, Queues = Options.DataPath.EventLoops,
        });
    }

    private static UserspaceStackOptions StackOptions(NetDeviceOptions net, PhysicalAddress mac) => new()
    {
        MacAddress = mac,
        IPv4Address = net.IPv4Address is { } v4 ? IPAddress.Parse(v4) : null,
        IPv6Address = net.IPv6Address is { } v6 ? InterfaceAddress.Parse(v6).Address : null,
        Mtu = net.Mtu,
    };

    /// <summary>
    /// The TCP/IP stack of an overlay joined with <see cref="OverlayBuilder.WithUserspaceStack"/>: connect, listen and
    /// send datagrams on the overlay from this process, with no TAP and no root.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The node does not serve the overlay (or is not started).</exception>
    /// <exception cref="InvalidOperationException">The overlay's NIC is a TAP or an in-memory device, not a stack.</exception>
    public UserspaceStack Network(string overlayId) =>
        GetOverlay(overlayId).Device as UserspaceStack
        ?? throw new InvalidOperationException($"overlay '{overlayId}' has no userspace stack: join it with WithUserspaceStack()");

    private void OnPeerChanged(object? sender, PeerEvent e)
    {
        if (_engines.TryGetValue(e.OverlayId, out var engine)) engine.OnPeerEvent(e);
        PeerChanged?.Invoke(this, e);
    }

    private void OnSignalingState(object? sender, SignalingStateChangedEventArgs e) =>
        SignalingChanged?.Invoke(this, new SignalingEvent(e.State, e.Error?.Message ?? ""));

    private async Task ReadSignalsAsync(ISignalingChannel signaling, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var signal in signaling.ReadIncomingAsync(cancellationToken).ConfigureAwait(false))
                if (_engines.TryGetValue(signal.Message.OverlayId, out var engine)) engine.OnSignal(signal);
        }
        catch (OperationCanceledException)
        {
            // shutting down
        }
    }

    private void RaiseLink(LinkEvent e)
    {
        _telemetry.OnLinkEvent(e);
        LinkChanged?.Invoke(this, e);
        lock (_gate)
            foreach (var watcher in _linkWatchers) watcher.Writer.TryWrite(e);
    }

    /// <summary>Streams link changes from now on (each call gets its own stream; a slow reader loses the oldest).</summary>
    public async IAsyncEnumerable<LinkEvent> WatchLinksAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var channel = Channel.CreateBounded<LinkEvent>(new BoundedChannelOptions(WatcherCapacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        lock (_gate) _linkWatchers.Add(channel);
        try
        {
            await foreach (var e in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false)) yield return e;
        }
        finally
        {
            lock (_gate) _linkWatchers.Remove(channel);
        }
    }

    /// <summary>Streams membership changes from now on (see <see cref="ISignalingChannel.WatchPeersAsync"/>).</summary>
    public IAsyncEnumerable<PeerEvent> WatchPeersAsync(CancellationToken cancellationToken = default) =>
        (_signaling ?? throw new InvalidOperationException("the node is not started")).WatchPeersAsync(cancellationToken);

    /// <summary>A snapshot: signaling state, members, links with their paths, RTT and counters, switch counters.</summary>
    public async Task<OverlayNodeStatus> GetStatusAsync()
    {
        var overlays = new List<OverlayStatus>();
        foreach (var network in Overlays) overlays.Add(await network.GetStatusAsync().ConfigureAwait(false));
        return new OverlayNodeStatus(NodeId, "sha-256 " + Identity.Fingerprint, SignalingState, overlays)
        {
            NodeIdConflicts = _signaling is { } signaling ? [.. signaling.NodeIdConflicts.Order(StringComparer.Ordinal)] : [],
        };
    }

    /// <summary>
    /// Waits until the node is ready: started, its signaling connected, and every overlay joined (its members known and
    /// links being formed to them). After a lost signaling connection it waits for the reconnection; links that work go on
    /// meanwhile.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The node stopped (or its start failed: then the start's exception).</exception>
    public async Task WaitUntilReadyAsync(CancellationToken cancellationToken = default)
    {
        await _startedOnce.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        var signaling = _signaling ?? throw new ObjectDisposedException(nameof(OverlayNode));
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnState(object? sender, SignalingStateChangedEventArgs e)
        {
            if (e.State == SignalingState.Connected) connected.TrySetResult();
            else if (e.State == SignalingState.Closed) connected.TrySetException(new ObjectDisposedException(nameof(OverlayNode)));
        }
        signaling.StateChanged += OnState;
        try
        {
            switch (signaling.State)
            {
                case SignalingState.Connected: return;
                case SignalingState.Closed: throw new ObjectDisposedException(nameof(OverlayNode));
            }
            await connected.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            signaling.StateChanged -= OnState;
        }
    }

    /// <summary>
    /// Stops the node: tears down every link (telling the peers over the link and through signaling), closes the NICs and
    /// leaves signaling. A stopped node does not start again. When <paramref name="cancellationToken"/> fires first, the
    /// call returns and the teardown goes on in the background.
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => DisposeAsync().AsTask().WaitAsync(cancellationToken);

    /// <summary>Tears down every link (telling the peers), closes the NICs and leaves signaling (as <see cref="StopAsync"/>).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_startedOnce.TrySetException(new ObjectDisposedException(nameof(OverlayNode)))) _ = _startedOnce.Task.Exception;
        foreach (var engine in _engines.Values) await engine.DisposeAsync().ConfigureAwait(false);
        _loops?.Dispose(); // after the engines: their NICs and link sockets have left them
        await _lifetime.CancelAsync().ConfigureAwait(false);
        if (_reader is not null) await _reader.ConfigureAwait(false);
        if (_warmUp is not null) await _warmUp.ConfigureAwait(false); // it uses the key, disposed below
        _iceScheduler?.Dispose(); // after every agent: the engines' links and the warm-up's
        if (_signaling is { } signaling)
        {
            signaling.PeerChanged -= OnPeerChanged;
            await signaling.DisposeAsync().ConfigureAwait(false);
            signaling.StateChanged -= OnSignalingState; // after: its Closed is raised too
        }
        lock (_gate)
            foreach (var watcher in _linkWatchers) watcher.Writer.TryComplete();
        _lifetime.Dispose();
        foreach (var anchor in _trust) anchor?.Dispose();
        _telemetry.Dispose();
        if (_ownsIdentity) Identity.Dispose();
        LogStopped(NodeId);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "node {NodeId} started on {Overlays}; certificate sha-256 {Fingerprint}")]
    private partial void LogStarted(string nodeId, string overlays, string fingerprint);

    [LoggerMessage(Level = LogLevel.Information, Message = "node {NodeId} stopped")]
    private partial void LogStopped(string nodeId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{File} ({What}) can be read by its group or others (mode {Mode}): restrict it with chmod 600")]
    private partial void LogSecretExposed(string file, string what, string mode);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot resolve {Server}: {Reason}; going on without it")]
    private partial void LogUnresolved(string server, string reason);
}

/// <summary>One overlay of a running node: its virtual NIC, its switch and its status.</summary>
public sealed class OverlayNetwork
{
    private readonly OverlayEngine _engine;

    internal OverlayNetwork(OverlayEngine engine) => _engine = engine;

    internal OverlayEngine Engine => _engine;

    /// <summary>The overlay's ID.</summary>
    public string Id => _engine.Id;

    /// <summary>Its settings.</summary>
    public OverlayOptions Options => _engine.Options;

    /// <summary>The virtual NIC: a Linux TAP, or an <see cref="InMemoryEthernetDevice"/> to attach an in-process host to.</summary>
    public IEthernetDevice Device => _engine.Device;

    /// <summary>The overlay's switch (counters, neighbours).</summary>
    internal OverlaySwitch Switch => _engine.Switch;

    /// <summary>A snapshot of members, links and counters.</summary>
    public Task<OverlayStatus> GetStatusAsync() => _engine.GetStatusAsync();
}
