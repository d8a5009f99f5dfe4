using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;
using Overlay.Transport;

namespace Overlay.Nat.Ice;

/// <summary>
/// An ICE agent (RFC 8445) for one component over one UDP socket that also carries TURN, DTLS and data (RFC 7983).
/// <list type="number">
/// <item><see cref="Create(IceOptions, IceRole)"/> binds the socket and gathers host candidates in the calling thread's network namespace.</item>
/// <item><see cref="GatherAsync"/> adds server-reflexive and relayed candidates (also announced by <see cref="CandidateGathered"/> for trickling).</item>
/// <item>Exchange <see cref="LocalCredentials"/> and candidates with the peer; call <see cref="SetRemoteCredentials"/>,
/// <see cref="AddRemoteCandidate"/> (any time, also after start) and <see cref="Start"/>.</item>
/// <item>Await <see cref="WaitForSelectedPairAsync"/>; send and receive over <see cref="Channel"/>.</item>
/// <item><see cref="Restart"/> recovers a broken path with new credentials on the same agent, socket and relay; gathering
/// again then renews the relay if its allocation was lost with a changed NAT mapping.</item>
/// </list>
/// </summary>
internal sealed partial class IceAgent : IAsyncDisposable
{
    private readonly IceOptions _options;
    private readonly StunEndpoint _endpoint;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly List<IceCandidate> _local = [];
    private readonly List<IceCandidate> _remote = [];
    private readonly List<CandidatePair> _pairs = [];
    private readonly Queue<CandidatePair> _triggered = new();
    private readonly Dictionary<AddressFamily, IceCandidate> _hostBase = [];
    private readonly HashSet<(TurnClient Turn, IPAddress Peer)> _permissions = [];
    private readonly RelaySlot[] _relays;
    private readonly Channel<IceState> _stateChanges = System.Threading.Channels.Channel.CreateUnbounded<IceState>();
    private readonly IceDatagramChannel _channel;
    private IceCredentials _localCredentials;
    private IceCredentials? _remoteCredentials;
    private byte[] _localKey = [];
    private byte[] _remoteKey = [];
    private byte[] _expectedUsernamePrefix = [];
    private byte[] _checkUsername = [];
    private ulong _tieBreaker;
    private int _generation;
    private bool _started, _endOfRemoteCandidates;
    private long _tickDue;
    private long _checkingSince, _firstValidAt, _nextConsentAt, _nextUpgradeAt;
    private int _upgrading;
    private CandidatePair? _nominating;
    private volatile CandidatePair? _selected;
    private TaskCompletionSource<IceSelectedPair> _selectedPair = NewSelectedPairSource();
    private long _unauthorized, _badRequests, _unknownAttributes, _roleConflicts, _candidatesRefused, _candidatesUnusable;

    private IceAgent(IceOptions options, IceRole role, StunEndpoint endpoint)
    {
        _options = options;
        _endpoint = endpoint;
        _logger = options.LoggerFactory?.CreateLogger<IceAgent>() ?? (ILogger)NullLogger.Instance;
        Role = role;
        _tieBreaker = RandomTieBreaker();
        _localCredentials = IceCredentials.NewRandom();
        _channel = new IceDatagramChannel(this);
        ApplyLocalCredentials();
        endpoint.Requests = new RequestHandler(this);
        // Every TURN server gets its client now, so that a stream's socket is made in the caller's network namespace.
        _relays = [.. options.TurnServers.Select((server, index) => new RelaySlot(server, index) { Turn = endpoint.AttachTurn(server) })];
    }

    /// <summary>
    /// Creates an agent: binds its UDP socket (served by an event loop of its own) and gathers host candidates in the
    /// calling thread's network namespace.
    /// </summary>
    public static IceAgent Create(IceOptions options, IceRole role) => Create(options, role, loop: null);

    /// <summary>
    /// Creates an agent whose socket is served by <paramref name="loop"/> (null: by a loop of its own), with UDP
    /// segmentation offload and receive coalescing when <paramref name="segmentation"/>.
    /// </summary>
    internal static IceAgent Create(IceOptions options, IceRole role, EventLoop? loop, bool segmentation = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var mux = UdpMux.Bind(options.Port, segmentation);
        var endpoint = new StunEndpoint(mux, options.TimeProvider, options.LoggerFactory?.CreateLogger<StunEndpoint>(), options.Scheduler);
        var agent = new IceAgent(options, role, endpoint);
        agent.GatherHostCandidates();
        mux.Attach(loop);
        return agent;
    }

    /// <summary>This agent's credentials for the current session (new after <see cref="Restart"/>).</summary>
    public IceCredentials LocalCredentials
    {
        get { lock (_gate) return _localCredentials; }
    }

    /// <summary>Current role; it can change on a role conflict (RFC 8445 §7.3.1.1).</summary>
    public IceRole Role { get; private set; }

    /// <summary>Current state.</summary>
    public IceState State { get; private set; } = IceState.New;

    /// <summary>Every state change, in order.</summary>
    public ChannelReader<IceState> StateChanges => _stateChanges.Reader;

    /// <summary>Raised (outside the agent's lock) for each candidate gathered, for trickling to the peer.</summary>
    public event Action<IceCandidate>? CandidateGathered;

    /// <summary>Raised (on the thread pool) when the selected pair changes to another one: a better pair was nominated later.</summary>
    public event Action<IceSelectedPair>? SelectedPairChanged;

    /// <summary>The local UDP port all candidates are based on.</summary>
    public int LocalPort => _endpoint.Mux.LocalEndPoint.Port;

    /// <summary>A snapshot of the local candidates (host, server-reflexive, relayed, and peer-reflexive ones learned from checks).</summary>
    public IReadOnlyList<IceCandidate> LocalCandidates
    {
        get { lock (_gate) return [.. _local]; }
    }

    /// <summary>A snapshot of the remote candidates (signalled and peer-reflexive).</summary>
    public IReadOnlyList<IceCandidate> RemoteCandidates
    {
        get { lock (_gate) return [.. _remote]; }
    }

    /// <summary>The selected pair, or null.</summary>
    public IceSelectedPair? SelectedPair => _selectedPair.Task.IsCompletedSuccessfully ? _selectedPair.Task.Result : null;

    /// <summary>The datagram path over the selected pair, for the DTLS handshake and data (stable across restarts).</summary>
    public IDatagramChannel Channel => _channel;

    /// <summary>Counters of dropped and refused input, for diagnostics and tests.</summary>
    public IceAgentCounters Counters => new(
        _endpoint.Malformed, _endpoint.Unsolicited, Interlocked.Read(ref _unauthorized), Interlocked.Read(ref _badRequests),
        Interlocked.Read(ref _unknownAttributes), Interlocked.Read(ref _roleConflicts), _endpoint.Keepalives,
        _endpoint.Mux.Dropped + _endpoint.TurnDropped + _channel.Dropped, Interlocked.Read(ref _candidatesRefused),
        Interlocked.Read(ref _candidatesUnusable));

    private static TaskCompletionSource<IceSelectedPair> NewSelectedPairSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static ulong RandomTieBreaker()
    {
        Span<byte> b = stackalloc byte[8];
        System.Security.Cryptography.RandomNumberGenerator.Fill(b);
        return BitConverter.ToUInt64(b);
    }

    private void ApplyLocalCredentials()
    {
        _localKey = Encoding.UTF8.GetBytes(_localCredentials.Password);
        // RFC 8445 §7.2.2: USERNAME of a check is "remote-ufrag:local-ufrag"; ours, received, starts with our ufrag and ':'.
        _expectedUsernamePrefix = Encoding.UTF8.GetBytes(_localCredentials.Ufrag + ":");
    }

    /// <summary>Sets the peer's credentials (from signaling). Checks start once these are known and <see cref="Start"/> was called.</summary>
    public void SetRemoteCredentials(IceCredentials remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        if (!remote.IsValid()) throw new ArgumentException("remote ICE credentials are malformed (ufrag ≥ 4, pwd ≥ 22 ice-chars)", nameof(remote));
        lock (_gate)
        {
            _remoteCredentials = remote;
            _remoteKey = Encoding.UTF8.GetBytes(remote.Password);
            _checkUsername = Encoding.UTF8.GetBytes($"{remote.Ufrag}:{_localCredentials.Ufrag}");
        }
    }

    /// <summary>Adds a remote candidate (trickled or from the offer); pairs it and schedules its checks.</summary>
    public void AddRemoteCandidate(IceCandidate candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        lock (_gate)
        {
            if (State is IceState.Closed) return;
            if (!IsUsableRemote(candidate.Address))
            {
                Interlocked.Increment(ref _candidatesUnusable);
                return;
            }
            var known = _remote.FindIndex(c => c.Address.Equals(candidate.Address));
            if (known >= 0)
            {
                if (_remote[known].Type == IceCandidateType.PeerReflexive && candidate.Type != IceCandidateType.PeerReflexive)
                    Reclassify(known, candidate);
                return;
            }
            if (!RoomForRemote()) return;
            _remote.Add(candidate);
            PairWithLocals(candidate);
            if (_started) TickSoon(); // trickled after the link came up: checked at once, not at the next consent
        }
    }

    /// <summary>
    /// A remote candidate first learned from a check (peer-reflexive, RFC 8445 §7.3.1.3) and then signalled: the peer's
    /// checks overtook its candidates, as happens when signaling is slower than the path. The signalled candidate tells
    /// what the address really is (a host one, say), so it replaces the learned one in the pairs that use it, and when
    /// one of them is the selected pair, the path is reported again: otherwise a link between two host candidates would
    /// be reported as reflexive for its whole life, depending on which message came first (caller holds the lock).
    /// </summary>
    private void Reclassify(int index, IceCandidate signalled)
    {
        var learned = _remote[index];
        _remote[index] = signalled;
        foreach (var pair in _pairs)
            if (ReferenceEquals(pair.Remote, learned)) pair.Remote = signalled;
        if (_selected is { } selected && ReferenceEquals(selected.Remote, signalled) && _selectedPair.Task.IsCompletedSuccessfully) ReportPath(SelectedOf(selected));
    }

    /// <summary>
    /// RFC 8445 §6.1.2.5 bounds the checks an agent performs (100 by default): every remote candidate is checked from the
    /// socket and the relay, at most two pairs each, so a peer that signals thousands of addresses cannot aim this agent's
    /// checks at them. Beyond the bound, candidates are refused and counted (caller holds the lock).
    /// </summary>
    private bool RoomForRemote()
    {
        if (_remote.Count < MaxRemoteCandidates) return true;
        Interlocked.Increment(ref _candidatesRefused);
        return false;
    }

    /// <summary>
    /// A signalled address this agent may send checks to: never an unspecified, multicast or broadcast address or port 0
    /// (a peer could aim our checks at a whole segment), never an IPv6 link-local one (no scope travels with it), and a
    /// loopback one only where the options allow it (agents on one host in tests): a member must not be able to make our
    /// checks reach services on our own host.
    /// </summary>
    internal bool IsUsableRemote(IPEndPoint address)
    {
        var ip = address.Address;
        if (address.Port == 0 || ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any) || ip.Equals(IPAddress.Broadcast)) return false;
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        if (ip.AddressFamily == AddressFamily.InterNetworkV6 && (ip.IsIPv6Multicast || ip.IsIPv6LinkLocal)) return false;
        if (ip.AddressFamily == AddressFamily.InterNetwork)
        {
            Span<byte> b = stackalloc byte[4];
            ip.TryWriteBytes(b, out _);
            if (b[0] is 0 or >= 224) return false; // "this network", multicast (224/4) and reserved (240/4, broadcast)
        }
        return _options.AllowLoopbackCandidates || !IPAddress.IsLoopback(ip);
    }

    /// <summary>Remote candidates kept per ICE session: two pairs each stay within RFC 8445's default of 100 checks.</summary>
    public const int MaxRemoteCandidates = 50;

    /// <summary>Signals that the peer will send no more candidates: the agent may fail early once every pair failed.</summary>
    public void EndOfRemoteCandidates()
    {
        lock (_gate) _endOfRemoteCandidates = true;
    }

    /// <summary>Starts connectivity checks (again, after <see cref="Restart"/>).</summary>
    public void Start()
    {
        lock (_gate)
        {
            if (State is IceState.Closed) throw new ObjectDisposedException(nameof(IceAgent));
            if (_started) return;
            _started = true;
            _checkingSince = _endpoint.Scheduler.Now;
            SetState(IceState.Checking);
            ScheduleTick(_ticker = new Ticker(this), _checkingSince); // the first check goes out now, the next after Ta
        }
    }

    /// <summary>Completes with the selected pair; throws <see cref="IceFailedException"/> if the agent fails first.</summary>
    public Task<IceSelectedPair> WaitForSelectedPairAsync(CancellationToken cancellationToken = default)
    {
        Task<IceSelectedPair> task;
        lock (_gate) task = _selectedPair.Task;
        return task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// ICE restart (RFC 8445 §2.4): new local credentials, remote credentials and candidates forgotten, checks stopped
    /// until <see cref="Start"/>. The socket, the relay allocation and local candidates stay (call <see cref="GatherAsync"/> to
    /// learn a changed mapping and to replace a relay allocation the server no longer refreshes); data keeps flowing over
    /// the previously selected pair until a new one is selected. Returns the new credentials to signal.
    /// </summary>
    public IceCredentials Restart()
    {
        lock (_gate)
        {
            if (State is IceState.Closed) throw new ObjectDisposedException(nameof(IceAgent));
            _generation++;
            _endpoint.Transactions.CancelAll(_checkOwner ??= new CheckOwner(this));
            _localCredentials = IceCredentials.NewRandom();
            ApplyLocalCredentials();
            _remoteCredentials = null;
            _remoteKey = [];
            _remote.Clear();
            _pairs.Clear();
            _triggered.Clear();
            _local.RemoveAll(c => c.Type == IceCandidateType.PeerReflexive);
            _nominating = null;
            _firstValidAt = 0;
            _started = false;
            _endOfRemoteCandidates = false;
            if (_selectedPair.Task.IsCompleted) _selectedPair = NewSelectedPairSource();
            SetState(IceState.New);
            LogRestart(_localCredentials.Ufrag);
            return _localCredentials;
        }
    }

    private void SetState(IceState state)
    {
        if (State == state) return;
        State = state;
        _stateChanges.Writer.TryWrite(state);
        LogState(state);
        if (state == IceState.Failed) _selectedPair.TrySetException(new IceFailedException("no candidate pair works (or consent was lost)"));
    }

    /// <summary>Closes the socket and deallocates the TURN relay.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (State == IceState.Closed) return;
            SetState(IceState.Closed);
            _selectedPair.TrySetException(new ObjectDisposedException(nameof(IceAgent)));
            _stateChanges.Writer.TryComplete();
        }
        await Task.WhenAll(_endpoint.Turns.Select(t => t.DisposeAsync().AsTask())).ConfigureAwait(false);
        lock (_gate)
        {
            if (_ticker is { } ticker) _endpoint.Scheduler.Cancel(ticker); // a shared scheduler outlives the agent
            _ticker = null;
        }
        _endpoint.Dispose();
    }

    /// <summary>Feeds one datagram into the receive path as if it arrived on the socket (tests: hostile input).</summary>
    internal void Receive(ReadOnlySpan<byte> datagram, IPEndPoint from) => _endpoint.Mux.Dispatch(datagram, _endpoint.Mux.ToSocketAddress(from), batch: null);

    internal IReadOnlyList<string> Pairs
    {
        get { lock (_gate) return [.. _pairs.Select(p => p.ToString())]; }
    }

    internal string Diagnostics => $"received {_endpoint.Mux.Received} muxDropped {_endpoint.Mux.Dropped} turnDropped {_endpoint.TurnDropped} pendingTx {_endpoint.Transactions.Pending} sendFailures {_endpoint.Mux.SendFailures} alive {_endpoint.Mux.ReceiverAlive}";

    internal int PairCount
    {
        get { lock (_gate) return _pairs.Count; }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE state {State}")]
    private partial void LogState(IceState state);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE restart, new ufrag {Ufrag}")]
    private partial void LogRestart(string ufrag);

    [LoggerMessage(Level = LogLevel.Information, Message = "TURN allocation {Relayed} no longer refreshes (the mapping towards the server changed?): allocating again")]
    private partial void LogRelayLost(StunAddress? relayed);

    [LoggerMessage(Level = LogLevel.Information, Message = "ICE: UDP passes again, checking the direct and UDP-relayed pairs anew")]
    private partial void LogUpgrade();

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE selected {Pair}")]
    private partial void LogSelected(CandidatePair pair);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE role switched to {Role} (487 / conflict)")]
    private partial void LogRoleSwitch(IceRole role);
}

/// <summary>Raised when ICE cannot find a working path.</summary>
internal sealed class IceFailedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public IceFailedException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public IceFailedException() : base("ICE failed") { }

    /// <summary>Creates the exception.</summary>
    public IceFailedException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>What an <see cref="IceAgent"/> dropped or refused (never thrown, always counted).</summary>
/// <param name="Malformed">STUN that failed to parse or carried a wrong FINGERPRINT.</param>
/// <param name="Unsolicited">Responses matching no transaction; indications and requests nobody takes.</param>
/// <param name="Unauthorized">Checks or responses with a wrong USERNAME or MESSAGE-INTEGRITY (401, RFC 8445 §7.3).</param>
/// <param name="BadRequests">Checks without USERNAME or MESSAGE-INTEGRITY (400).</param>
/// <param name="UnknownAttributes">Checks with unknown comprehension-required attributes (420).</param>
/// <param name="RoleConflicts">Role conflicts seen (487 sent or received).</param>
/// <param name="Keepalives">Binding indications received (RFC 8445 §11 keepalives).</param>
/// <param name="DatagramsDropped">Non-STUN datagrams dropped: unknown first byte, unknown sender, no receiver.</param>
/// <param name="CandidatesRefused">Remote candidates (signalled or peer-reflexive) beyond <see cref="IceAgent.MaxRemoteCandidates"/>.</param>
/// <param name="CandidatesUnusable">Signalled candidates whose address no check may go to (loopback, multicast, unspecified, port 0).</param>
internal sealed record IceAgentCounters(long Malformed, long Unsolicited, long Unauthorized, long BadRequests, long UnknownAttributes,
    long RoleConflicts, long Keepalives, long DatagramsDropped, long CandidatesRefused, long CandidatesUnusable)
{
    /// <summary>Every STUN message that was refused or ignored.</summary>
    public long StunRefused => Malformed + Unsolicited + Unauthorized + BadRequests + UnknownAttributes + Keepalives;
}
