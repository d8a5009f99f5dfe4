using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Overlay.Stack.Internal;
using Overlay.Stack.Ip;
using Overlay.Stack.Tcp;

using Overlay.Tap;

namespace Overlay.Stack;

/// <summary>
/// A TCP/IP stack in the process, on an overlay's virtual NIC: it is the <see cref="IEthernetDevice"/> the node's switch
/// port talks to, as a TAP is, but the host behind it is this object, so a program dials (<see cref="ConnectAsync"/>),
/// listens (<see cref="ListenAsync"/>) and sends datagrams (<see cref="BindUdp"/>) on the overlay with no root.
/// </summary>
/// <remarks>
/// The frame's way: the switch hands a frame to <see cref="TryWrite"/>, which copies it into a bounded queue and never
/// blocks; the stack's own thread takes it from there (Ethernet, ARP / Neighbor Discovery, IPv4 / IPv6, ICMP, UDP, TCP),
/// puts data into the connection's receive buffer and wakes its reader. What the stack sends (segments released by an
/// acknowledgment, by the application's writes, or by a timer) is written into one frame buffer and handed to the
/// switch's sink on the thread that caused it. All state is guarded by one lock; nothing is allocated per segment.
/// </remarks>
public sealed partial class UserspaceStack : IEthernetDevice
{
    internal const int EphemeralFirst = 49152; // RFC 6335 §6
    private readonly object _gate = new();
    private readonly FrameQueue _inbound;
    private readonly byte[] _tx;
    private readonly NeighborTable _neighbors;
    private readonly Dictionary<TcpKey, TcpConnection> _connections = [];
    private readonly Queue<TcpConnection> _halfOpen = new();
    private readonly Dictionary<int, OverlayTcpListener> _listeners = [];
    private readonly Dictionary<int, OverlayUdpSocket> _udp = [];
    private readonly Dictionary<UInt128, TaskCompletionSource<ulong>> _resolving = [];
    private readonly List<TcpConnection> _dueScratch = [];
    private readonly List<TcpConnection> _acksDue = [];
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly ITimer _timer;
    private readonly Thread _thread;
    private readonly double _microsecondsPerTick;
    private readonly long _started;
    private IFrameSink? _sink;
    private IFrameBurstSink? _burstSink;
    private DeviceBatch? _batch;     // lent by the sink; used under the lock, between BeginBurst and EndBurst
    private int _burstDepth;
    private bool _burstPending;
    private volatile bool _disposed;
    private int _sleeping;
    private int _timerFired;
    private long _nextTimer = long.MaxValue; // µs; when the earliest connection timer may be due
    private long _armedTimer = long.MaxValue;
    private ushort _ipId;
    private int _nextEphemeral;

    /// <summary>Creates a stack on a NIC named <paramref name="name"/>; it starts when the node's switch starts the device.</summary>
    public UserspaceStack(string name, UserspaceStackOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Name = name;
        Options = options;
        Time = time ?? TimeProvider.System;
        MacAddress = options.MacAddress;
        Mac = Addresses.ReadMac(options.MacAddress.GetAddressBytes());
        Mtu = options.Mtu;
        if (options.IPv4Address is { } v4) LocalV4 = Addresses.From(v4);
        if (options.IPv6Address is { } v6) LocalV6 = Addresses.From(v6);
        _inbound = new FrameQueue(options.InboundQueueFrames, options.Mtu + 18);
        _tx = GC.AllocateUninitializedArray<byte>(options.Mtu + 18);
        _neighbors = new NeighborTable(options.MaxNeighbors);
        _microsecondsPerTick = 1_000_000.0 / Time.TimestampFrequency;
        _started = Time.GetTimestamp();
        _nextEphemeral = EphemeralFirst + Random.Shared.Next(16384);
        _timer = Time.CreateTimer(static s => ((UserspaceStack)s!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _thread = new Thread(Run) { IsBackground = true, Name = "overlay stack " + name };
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public PhysicalAddress MacAddress { get; }

    /// <inheritdoc />
    public int Mtu { get; }

    /// <inheritdoc />
    public EthernetDeviceCounters Counters { get; } = new();

    /// <summary>What the stack did and dropped, by reason.</summary>
    public StackCounters Statistics { get; } = new();

    /// <inheritdoc />
    public string? Fault => null;

    /// <summary>The settings it runs with.</summary>
    public UserspaceStackOptions Options { get; }

    /// <summary>The IPv4 address, if any.</summary>
    public IPAddress? IPv4Address => Options.IPv4Address;

    /// <summary>The IPv6 address, if any.</summary>
    public IPAddress? IPv6Address => Options.IPv6Address;

    internal TimeProvider Time { get; }

    internal ulong Mac { get; }

    internal UInt128? LocalV4 { get; }

    internal UInt128? LocalV6 { get; }

    internal object Gate => _gate;

    internal int TcpConnectionCount
    {
        get
        {
            lock (_gate) return _connections.Count;
        }
    }

    /// <summary>Every connection's state, for tests and diagnostics.</summary>
    internal string Describe()
    {
        lock (_gate) return $"now={NowMicroseconds()} nextTimer={_nextTimer} armed={_armedTimer} queue={(_inbound.IsEmpty ? "empty" : "busy")}\n" + string.Join("\n", _connections.Values);
    }

    internal long NowMicroseconds() => (long)((Time.GetTimestamp() - _started) * _microsecondsPerTick);

    /// <inheritdoc />
    public void Start(IFrameSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        lock (_gate)
        {
            if (_sink is not null) throw new InvalidOperationException($"{Name} is already started");
            if (sink is IBatchingFrameSink batching)
            {
                _batch = batching.CreateBatch();
                _burstSink = batching;
            }
            _sink = sink;
        }
        _thread.Start();
    }

    /// <summary>A frame for the stack: copied and queued for the stack's thread; never blocks.</summary>
    public bool TryWrite(ReadOnlySpan<byte> frame)
    {
        if (_disposed || !_inbound.TryEnqueue(frame))
        {
            Interlocked.Increment(ref Counters.WriteDropsValue);
            if (!_disposed) Statistics.Drop(frame.Length > _inbound.MaxFrame ? StackDropReason.FrameLength : StackDropReason.InboundQueueFull);
            return false;
        }
        Interlocked.Increment(ref Counters.FramesWrittenValue);
        Interlocked.Add(ref Counters.BytesWrittenValue, frame.Length);
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _sleeping) != 0) _wake.Set();
        return true;
    }

    /// <summary>
    /// Opens a TCP connection to <paramref name="address"/>:<paramref name="port"/> on the overlay. Cancel the token to
    /// give up (a timeout is a token that cancels after it).
    /// </summary>
    /// <exception cref="SocketException">The peer refused (a reset), did not answer, or is not on the overlay's subnet.</exception>
    public async Task<OverlayTcpStream> ConnectAsync(IPAddress address, int port, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var remote = Addresses.From(address);
        var local = LocalFor(remote) ?? throw new SocketException((int)SocketError.AddressFamilyNotSupported);
        var mac = await ResolveAsync(remote, cancellationToken).ConfigureAwait(false);
        TcpConnection connection;
        ValueTask connected;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var localPort = AllocateTcpPort(remote, port);
            connection = new TcpConnection(this, new TcpKey(remote, (ushort)port, (ushort)localPort), local, mac);
            _connections.Add(connection.Key, connection);
            Statistics.Connections = _connections.Count;
            connection.OpenActive(NowMicroseconds());
            connected = connection.WaitConnected(cancellationToken);
        }
        try
        {
            await connected.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            lock (_gate) connection.Abort(sendReset: true);
            throw;
        }
        return new OverlayTcpStream(connection);
    }

    /// <summary>Listens for TCP connections on <paramref name="port"/> (both families); at most <paramref name="backlog"/> wait to be accepted.</summary>
    /// <exception cref="SocketException">The port is already listened on.</exception>
    public ValueTask<OverlayTcpListener> ListenAsync(int port, int backlog = 128)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(backlog);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_listeners.ContainsKey(port)) throw new SocketException((int)SocketError.AddressAlreadyInUse);
            var listener = new OverlayTcpListener(this, port, backlog);
            _listeners.Add(port, listener);
            return ValueTask.FromResult(listener);
        }
    }

    /// <summary>Binds a UDP socket to <paramref name="port"/> (0 picks a free ephemeral port).</summary>
    /// <exception cref="SocketException">The port is in use.</exception>
    public OverlayUdpSocket BindUdp(int port = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (port == 0)
            {
                for (var i = 0; i < 16384 && port == 0; i++)
                {
                    var candidate = NextEphemeral();
                    if (!_udp.ContainsKey(candidate)) port = candidate;
                }
                if (port == 0) throw new SocketException((int)SocketError.AddressAlreadyInUse);
            }
            if (_udp.ContainsKey(port)) throw new SocketException((int)SocketError.AddressAlreadyInUse);
            var socket = new OverlayUdpSocket(this, port, Options.UdpQueueDatagrams, Mtu);
            _udp.Add(port, socket);
            return socket;
        }
    }

    /// <summary>
    /// A <see cref="SocketsHttpHandler.ConnectCallback"/> that opens the connection through this stack, so that an
    /// <see cref="HttpClient"/> reaches web servers on the overlay: <c>new HttpClient(stack.CreateHttpHandler())</c>.
    /// The host of the URI must be an address literal (the overlay has no DNS of its own).
    /// </summary>
    public async ValueTask<Stream> ConnectHttpAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!IPAddress.TryParse(context.DnsEndPoint.Host.Trim('[', ']'), out var address))
            throw new HttpRequestException($"'{context.DnsEndPoint.Host}' is not an address: the overlay's stack resolves no names");
        return await ConnectAsync(address, context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A handler whose connections go through this stack (see <see cref="ConnectHttpAsync"/>).</summary>
    public SocketsHttpHandler CreateHttpHandler() => new() { ConnectCallback = ConnectHttpAsync, UseProxy = false };

    /// <summary>Stops the stack: every connection is reset, listeners and sockets are closed.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var connection in _connections.Values.ToArray()) connection.Abort(sendReset: true, new ObjectDisposedException(Name));
            foreach (var listener in _listeners.Values.ToArray()) listener.CloseLocked();
            foreach (var socket in _udp.Values.ToArray()) socket.CloseLocked();
            foreach (var waiter in _resolving.Values) waiter.TrySetException(new ObjectDisposedException(Name));
            _resolving.Clear();
        }
        _wake.Set();
        await _timer.DisposeAsync().ConfigureAwait(false);
        if (_thread.IsAlive && Thread.CurrentThread != _thread) await Task.Run(() => _thread.Join()).ConfigureAwait(false);
        lock (_gate)
        {
            (_batch as IDisposable)?.Dispose();
            _batch = null;
            _burstSink = null;
        }
    }

    internal UInt128? LocalFor(UInt128 remote) => Addresses.IsV4(remote) ? LocalV4 : LocalV6;

    private int NextEphemeral()
    {
        var port = _nextEphemeral;
        _nextEphemeral = port == 65535 ? EphemeralFirst : port + 1;
        return port;
    }

    private int AllocateTcpPort(UInt128 remote, int remotePort)
    {
        for (var i = 0; i < 16384; i++)
        {
            var port = NextEphemeral();
            if (!_connections.ContainsKey(new TcpKey(remote, (ushort)remotePort, (ushort)port)) && !_listeners.ContainsKey(port)) return port;
        }
        throw new SocketException((int)SocketError.AddressAlreadyInUse);
    }

    /// <summary>The MAC address of <paramref name="remote"/>, asked with ARP or Neighbor Solicitation when not known: three tries a second apart.</summary>
    internal async Task<ulong> ResolveAsync(UInt128 remote, CancellationToken cancellationToken)
    {
        TaskCompletionSource<ulong> waiter;
        lock (_gate)
        {
            if (_neighbors.TryGet(remote, out var known)) return known;
            if (!_resolving.TryGetValue(remote, out waiter!))
            {
                waiter = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
                _resolving.Add(remote, waiter);
            }
        }
        for (var attempt = 0; attempt < 3; attempt++)
        {
            lock (_gate) SendNeighborRequest(remote);
            try
            {
                return await waiter.Task.WaitAsync(TimeSpan.FromSeconds(1), Time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }
        lock (_gate)
            if (_resolving.TryGetValue(remote, out var current) && current == waiter) _resolving.Remove(remote);
        throw new SocketException((int)SocketError.HostUnreachable);
    }

    internal void Remove(TcpConnection connection)
    {
        if (_connections.TryGetValue(connection.Key, out var current) && current == connection) _connections.Remove(connection.Key);
        Statistics.Connections = _connections.Count;
    }

    internal void RemoveListener(OverlayTcpListener listener)
    {
        if (_listeners.TryGetValue(listener.Port, out var current) && current == listener) _listeners.Remove(listener.Port);
    }

    internal void RemoveUdp(OverlayUdpSocket socket)
    {
        if (_udp.TryGetValue(socket.Port, out var current) && current == socket) _udp.Remove(socket.Port);
    }

    /// <summary>Under the lock: a connection's timer is due no later than <paramref name="deadline"/> (µs).</summary>
    internal void ScheduleTimer(long deadline)
    {
        if (deadline >= _nextTimer) return;
        _nextTimer = deadline;
        if (deadline < _armedTimer)
        {
            _armedTimer = deadline;
            var delay = Math.Max(0, deadline - NowMicroseconds());
            _timer.Change(TimeSpan.FromMicroseconds(delay + 500), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// Under the lock: what is sent until the matching <see cref="EndBurst"/> goes with the sink's batch, if it lends one,
    /// so that the segments a write or an acknowledgment releases leave together (one system call per socket), not one
    /// by one.
    /// </summary>
    internal void BeginBurst() => _burstDepth++;

    /// <summary>Under the lock: the end of a run begun by <see cref="BeginBurst"/>; what it queued is sent now.</summary>
    internal void EndBurst()
    {
        if (--_burstDepth > 0 || !_burstPending) return;
        _burstPending = false;
        if (_batch is not { } batch || _burstSink is not { } sink) return;
        try
        {
            sink.OnBurstEnd(batch);
        }
        catch (Exception) when (!_disposed)
        {
            Interlocked.Increment(ref Counters.SinkErrorsValue); // the switch must not throw; if it does, the stack goes on
        }
    }

    /// <summary>Under the lock: the connection has an acknowledgment to send at the end of this burst.</summary>
    internal void AckAtBurstEnd(TcpConnection connection) => _acksDue.Add(connection);

    /// <summary>The timer may fire a little early against the stack's clock: the loop then arms it again for the rest.</summary>
    private void OnTimer()
    {
        Volatile.Write(ref _timerFired, 1);
        _wake.Set();
    }

    private void Run()
    {
        while (!_disposed)
        {
            var worked = false;
            lock (_gate)
            {
                BeginBurst();
                try
                {
                    // A burst: up to 64 frames under one lock, then the acknowledgments they call for.
                    for (var i = 0; i < 64 && _inbound.TryPeek(out var slot, out var length); i++)
                    {
                        worked = true;
                        try
                        {
                            OnFrame(slot.AsSpan(0, length));
                        }
                        finally
                        {
                            _inbound.Release();
                        }
                    }
                    foreach (var connection in _acksDue) connection.OnBurstEnd();
                    _acksDue.Clear();
                    var now = NowMicroseconds();
                    var fired = Interlocked.Exchange(ref _timerFired, 0) != 0;
                    if (now >= _nextTimer) RunTimers(now);
                    else if (fired && _nextTimer != long.MaxValue)
                    {
                        _armedTimer = long.MaxValue;
                        var next = _nextTimer;
                        _nextTimer = long.MaxValue;
                        ScheduleTimer(next);
                    }
                }
                finally
                {
                    EndBurst();
                }
            }
            if (worked) continue;
            _wake.Reset();
            Volatile.Write(ref _sleeping, 1);
            Interlocked.MemoryBarrier();
            if (_inbound.IsEmpty && !_disposed && Volatile.Read(ref _timerFired) == 0 && NowMicroseconds() < Volatile.Read(ref _nextTimer)) _wake.Wait();
            Volatile.Write(ref _sleeping, 0);
        }
    }

    private void RunTimers(long now)
    {
        _armedTimer = long.MaxValue;
        var next = long.MaxValue;
        _dueScratch.Clear();
        foreach (var connection in _connections.Values)
        {
            if (connection.NextDeadline <= now) _dueScratch.Add(connection);
            else next = Math.Min(next, connection.NextDeadline);
        }
        _nextTimer = long.MaxValue;
        foreach (var connection in _dueScratch) connection.OnTimer(now);
        foreach (var connection in _dueScratch)
            if (connection.NextDeadline != long.MaxValue) next = Math.Min(next, connection.NextDeadline);
        _dueScratch.Clear();
        _nextTimer = long.MaxValue;
        if (next != long.MaxValue) ScheduleTimer(next);
    }
}
