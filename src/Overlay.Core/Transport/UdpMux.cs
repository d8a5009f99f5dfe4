using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace Overlay.Transport;

/// <summary>Receives STUN messages (first byte 0–3) from a <see cref="UdpMux"/>.</summary>
internal interface IStunPacketHandler
{
    /// <summary>One STUN message; <paramref name="batch"/> is for what it carries (relayed data in a TURN Data indication).</summary>
    void OnStunPacket(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch);
}

/// <summary>Receives TURN ChannelData messages (first byte 64–79) from a <see cref="UdpMux"/>.</summary>
internal interface IChannelDataHandler
{
    void OnChannelData(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch);
}

/// <summary>
/// One UDP socket per ICE component, carrying STUN, TURN, DTLS and data, served by an <see cref="EventLoop"/>
/// (<see cref="Attach"/>): when readable, the loop's thread takes bursts with <c>recvmmsg</c> and demultiplexes on the
/// first byte (RFC 7983): 0–3 STUN, 64–79 TURN ChannelData, 20–63 DTLS and 192–255 Overlay data go to the
/// <see cref="IDatagramReceiver"/> registered for the sender's address, as a span of the receive buffer (no copy), with
/// the loop's batch. The socket is dual-stack when IPv6 is available; addresses are kept in the socket's own
/// <see cref="SocketAddress"/> form so the steady state allocates nothing.
/// </summary>
internal sealed class UdpMux : IReadableSource, IDisposable
{
    private readonly Socket _socket;
    private readonly Lock _routesGate = new();
    private readonly Lock _attachGate = new(); // the loop serving the socket: attached, moved, detached
    private Route[] _routes = [];
    private IStunPacketHandler? _stun;
    private IChannelDataHandler? _channelData;
    private readonly SocketAddress _from;
    private volatile EventLoop? _loop;
    private EventLoop? _ownLoop; // a loop started for this socket alone (Attach(null))
    private long _registration = -1;
    private volatile bool _closed;
    private readonly bool _coalescing; // UDP GRO asked for on the socket
    private bool _segmentation;        // UDP GSO on sends; turned off for good when the kernel or route refuses it
    private long _received, _dropped, _sendFailures, _segmentedSent, _coalescedReceived, _receiverFaults;

    private readonly record struct Route(SocketAddress Address, IDatagramReceiver Receiver);

    private UdpMux(Socket socket, bool segmentation)
    {
        _socket = socket;
        _coalescing = _segmentation = segmentation && Tap.Linux.LibC.IsLinux64;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        _from = new SocketAddress(socket.AddressFamily);
    }

    /// <summary>The bound address (the wildcard address and the chosen port).</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>True when the socket carries IPv6 (and IPv4 as mapped addresses).</summary>
    public bool DualStack => _socket.AddressFamily == AddressFamily.InterNetworkV6;

    public long Received => Interlocked.Read(ref _received);

    /// <summary>Datagrams dropped: unknown first byte, no receiver for the sender, or no handler.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    public long SendFailures => Interlocked.Read(ref _sendFailures);

    /// <summary>Datagrams whose receiver threw (caught and counted: the receive loop carries on).</summary>
    public long ReceiverFaults => Interlocked.Read(ref _receiverFaults);

    /// <summary>Datagrams that left in runs the kernel segmented (UDP GSO).</summary>
    public long SegmentedSent => Interlocked.Read(ref _segmentedSent);

    /// <summary>Datagrams that arrived coalesced with others of their run (UDP GRO).</summary>
    public long CoalescedReceived => Interlocked.Read(ref _coalescedReceived);

    /// <summary>The loop that serves the socket (<see cref="Attach"/>).</summary>
    internal EventLoop? Loop => _loop;

    internal bool ReceiverAlive => _loop is not null && !_closed;

    /// <summary>
    /// Binds a socket in the calling thread's network namespace (port 0: any free port). With
    /// <paramref name="segmentation"/> it uses UDP segmentation offload and receive coalescing where Linux has them.
    /// </summary>
    public static UdpMux Bind(int port = 0, bool segmentation = true)
    {
        Socket socket;
        try
        {
            socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
            socket.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
        }
        catch (SocketException)
        {
            socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Bind(new IPEndPoint(IPAddress.Any, port));
        }
        socket.ReceiveBufferSize = 4 << 20; // the kernel caps it at net.core.rmem_max; bursts of 64 KiB runs need room
        socket.SendBufferSize = 1 << 20;
        NeverFragment(socket);
        return new UdpMux(socket, segmentation);
    }

    // Linux <netinet/in.h>, <linux/in6.h>: the options and the mode of ip(7) and ipv6(7).
    private const int SolIp = 0, IpMtuDiscover = 10, SolIpv6 = 41, Ipv6MtuDiscover = 23, Ipv6DontFrag = 62, PmtuDiscProbe = 3;

    /// <summary>
    /// DF on every IPv4 datagram and no fragmentation of IPv6 ones, with the kernel's own path MTU (learned from ICMP) left
    /// out of it (IP_PMTUDISC_PROBE): links size their datagrams by their own probes (RFC 8899), so a datagram too large for
    /// the path is lost, never cut into fragments that networks drop, and a forged ICMP message cannot shrink the path.
    /// A datagram larger than the local interface fails at once (EMSGSIZE). On a dual-stack socket the IPv4 option
    /// governs the IPv4-mapped destinations. Where the options do not exist (not Linux) the socket stays as it was.
    /// </summary>
    private static void NeverFragment(Socket socket)
    {
        if (!OperatingSystem.IsLinux()) return;
        Span<byte> value = stackalloc byte[sizeof(int)];
        BitConverter.TryWriteBytes(value, PmtuDiscProbe); // an int in the host's byte order
        try
        {
            socket.SetRawSocketOption(SolIp, IpMtuDiscover, value);
            if (socket.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.SetRawSocketOption(SolIpv6, Ipv6MtuDiscover, value);
                BitConverter.TryWriteBytes(value, 1);
                socket.SetRawSocketOption(SolIpv6, Ipv6DontFrag, value);
            }
        }
        catch (SocketException)
        {
            // an older kernel without the mode: the kernel's own discovery (DF and ICMP) remains
        }
    }

    public void SetHandlers(IStunPacketHandler stun, IChannelDataHandler? channelData)
    {
        _stun = stun;
        _channelData = channelData;
    }

    /// <summary>The socket-form address for <paramref name="endPoint"/> (IPv4-mapped on a dual-stack socket). Cache it.</summary>
    public SocketAddress ToSocketAddress(IPEndPoint endPoint)
    {
        if (DualStack && endPoint.AddressFamily == AddressFamily.InterNetwork)
            endPoint = new IPEndPoint(endPoint.Address.MapToIPv6(), endPoint.Port);
        return endPoint.Serialize();
    }

    /// <summary>The endpoint for a socket-form address, with IPv4-mapped addresses unmapped (allocates; control path).</summary>
    public static IPEndPoint ToEndPoint(SocketAddress address)
    {
        var endPoint = (IPEndPoint)new IPEndPoint(IPAddress.IPv6Any, 0).Create(address);
        return endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;
    }

    /// <summary>Routes DTLS and data datagrams from <paramref name="remote"/> to <paramref name="receiver"/>.</summary>
    public void AddRoute(SocketAddress remote, IDatagramReceiver receiver)
    {
        lock (_routesGate)
        {
            var routes = _routes.Where(r => !r.Address.Equals(remote)).ToList();
            routes.Add(new Route(remote, receiver));
            _routes = [.. routes];
        }
    }

    public void RemoveRoute(SocketAddress remote)
    {
        lock (_routesGate) _routes = [.. _routes.Where(r => !r.Address.Equals(remote))];
    }

    /// <summary>
    /// Sends one datagram, or queues it (copied) in <paramref name="batch"/> to leave with the others when the batch
    /// completes; false (counted) when the socket refused it. Never blocks for long on UDP.
    /// </summary>
    public bool Send(ReadOnlySpan<byte> datagram, SocketAddress destination, DataPathBatch? batch = null)
    {
        if (_closed) return false;
        if (batch is not null && batch.TryQueue(this, datagram, destination)) return true;
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, destination);
            return true;
        }
        catch (SocketException)
        {
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Sends what a batch's <see cref="SendQueue"/> holds for this socket (on the batch's thread).</summary>
    internal void SendQueued(int count, SendQueue queue)
    {
        if (_closed) return;
        var handle = _socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            var sent = queue.Send(handle.DangerousGetHandle(), count, ref _segmentation, out var segmented);
            if (sent < count) Interlocked.Add(ref _sendFailures, count - sent);
            if (segmented > 0) Interlocked.Add(ref _segmentedSent, segmented);
        }
        catch (ObjectDisposedException)
        {
            // closed meanwhile: nothing to send on
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Serves this socket from <paramref name="loop"/> (call once): the loop's thread reads it when readable, with the
    /// loop's one receive block and batch. Null starts a loop for this socket alone, stopped with it (a standalone ICE
    /// agent's).
    /// </summary>
    public void Attach(EventLoop? loop)
    {
        lock (_attachGate)
        {
            if (_loop is not null) throw new InvalidOperationException("the socket is served by a loop already");
            if (loop is null) loop = _ownLoop = EventLoop.Start($"udp-mux {LocalEndPoint.Port}");
            var fd = (int)_socket.SafeHandle.DangerousGetHandle();
            if (_coalescing) MultiMessageReceiver.TryEnableCoalescing(fd);
            _loop = loop;
            _registration = loop.Register(fd, this);
        }
    }

    /// <summary>
    /// Serves the socket from <paramref name="loop"/> from now on (a link that came up moves to the loop with the fewest
    /// links up). What arrives meanwhile waits in the socket. Not on the current loop's thread; nothing for a socket
    /// with a loop of its own, or closed. A TURN stream connected through this socket stays on the loop it started on.
    /// </summary>
    internal void MoveTo(EventLoop loop)
    {
        ArgumentNullException.ThrowIfNull(loop);
        lock (_attachGate)
        {
            if (_closed || _ownLoop is not null || _loop is not { } old || old == loop) return;
            old.Unregister(_registration); // returns once the old loop is not reading the socket
            _loop = loop; // before the new loop can call: it reads with its own receive block
            _registration = loop.Register((int)_socket.SafeHandle.DangerousGetHandle(), this);
        }
    }

    /// <summary>The loop says the socket is readable: up to a few bursts, then the other descriptors get their turn.</summary>
    void IReadableSource.OnReadable(DataPathBatch batch)
    {
        if (_closed || _loop is not { } loop || !loop.IsLoopThread) return; // a loop the socket just left
        var receiver = loop.Receiver;
        var fd = _socket.SafeHandle.DangerousGetHandle(); // Dispose unregisters (and waits for this call) before closing
        for (var round = 0; round < 4 && !_closed; round++)
        {
            var n = receiver.Receive(fd, wait: false);
            if (n <= 0) return;
            HandleBatch(receiver, n, batch);
            if (n < MultiMessageReceiver.Batch) return;
        }
    }

    /// <summary>Dispatches one receive's datagrams, cutting coalesced runs; what they make us send goes out together when the batch completes.</summary>
    private void HandleBatch(MultiMessageReceiver receiver, int n, DataPathBatch batch)
    {
        var from = _from;
        int received = 0, coalesced = 0;
        for (var i = 0; i < n; i++)
        {
            var buffer = receiver.Datagram(i);
            if (buffer.IsEmpty) continue;
            receiver.Sender(i, from);
            var segment = receiver.SegmentSize(i);
            if (segment <= 0 || segment >= buffer.Length)
            {
                received++;
                Dispatch(buffer, from, batch);
                continue;
            }
            var pieces = (buffer.Length + segment - 1) / segment;
            received += pieces;
            coalesced += pieces;
            for (var offset = 0; offset < buffer.Length; offset += segment)
                Dispatch(buffer.Slice(offset, Math.Min(segment, buffer.Length - offset)), from, batch);
        }
        Interlocked.Add(ref _received, received);
        if (coalesced > 0) Interlocked.Add(ref _coalescedReceived, coalesced);
        batch.Complete(); // what this burst makes us send (forwarding, echoes, the host's answers) goes out together
    }

    /// <summary>RFC 7983 demultiplexing (also used for datagrams a TURN relay unwrapped).</summary>
    internal void Dispatch(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch)
    {
        if (datagram.IsEmpty)
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        var first = datagram[0];
        if (first <= 3)
        {
            if (_stun is { } stun) stun.OnStunPacket(datagram, from, batch);
            else Interlocked.Increment(ref _dropped);
        }
        else if (first is >= 64 and <= 79)
        {
            if (_channelData is { } channelData) channelData.OnChannelData(datagram, from, batch);
            else Interlocked.Increment(ref _dropped);
        }
        else if (first is (>= 20 and <= 63) or >= 192)
        {
            DeliverData(datagram, from, batch);
        }
        else
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    /// <summary>Hands a DTLS or data datagram to the receiver routed for <paramref name="from"/>.</summary>
    internal void DeliverData(ReadOnlySpan<byte> datagram, SocketAddress from, DataPathBatch? batch)
    {
        var routes = _routes;
        foreach (var route in routes)
        {
            if (route.Address.Equals(from))
            {
                try
                {
                    route.Receiver.OnDatagram(datagram, batch);
                }
#pragma warning disable CA1031 // one receiver's fault must not end the socket's receive loop (and with it every link on it)
                catch (Exception)
#pragma warning restore CA1031
                {
                    Interlocked.Increment(ref _receiverFaults);
                }
                return;
            }
        }
        Interlocked.Increment(ref _dropped);
    }

    /// <summary>Counts a datagram a handler dropped.</summary>
    internal void CountDrop() => Interlocked.Increment(ref _dropped);

    public void Dispose()
    {
        lock (_attachGate)
        {
            if (_closed) return;
            _closed = true;
            if (_loop is { } loop) loop.Unregister(_registration); // returns once the loop is not reading the socket
        }
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        _socket.Dispose();
        _ownLoop?.Dispose();
    }
}
