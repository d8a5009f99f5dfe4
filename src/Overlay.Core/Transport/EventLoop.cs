// The way of a frame through a node (one overlay; several share the loop):
//
//            host                                                           peer node
//              |  TAP (IPolledEthernetDevice)                                  ^
//   1 readable | EventLoop thread: epoll_wait                                  | UDP (sendmmsg, GSO runs)
//   2 read     | TapDevice.PollReady(queue, batch): read() into batch buffers,   |
//              |   TSO packets cut into frames (FrameOffload)                  |
//   3 switch   | DeviceInput -> OverlaySwitch.OnLocalFrame(frame, batch)       |
//   4 port     | LinkPort.TrySendFrame(frame, batch) -> TinCanLink.TrySend     |
//   5 seal     |   AES-GCM from the frame into the SendQueue's next slot, behind the headroom
//   6 queue    |   IceDatagramChannel -> UdpMux.Send: queued where it was sealed (no copy)
//   7 send     | end of the TAP burst: batch.Complete() -> sendmmsg per socket -+
//
//              +-------------------------------------------------------------------+
//   1 readable | EventLoop thread: a link's socket                                  |
//   2 read     | UdpMux.OnReadable(batch): recvmmsg (GRO runs cut back into datagrams)
//   3 demux    |   RFC 7983 first byte: STUN -> ICE, ChannelData -> TURN -> again, DTLS/data -> link
//   4 open     | TinCanLink.OnDatagram(datagram, batch): AES-GCM into a batch buffer, replay window
//   5 switch   | PeerLink -> OverlaySwitch.OnLinkFrame / OnLinkFlood(frame, batch)
//   6 port     | DevicePort.TrySendFrame(frame, batch): TCP segments merged in the batch (TcpCoalescer),
//              |   or on to another link (steps 4-6 of the way out: forwarding)
//   7 complete | end of the recvmmsg burst: batch.Complete(): merged writes -> TAP, then the TAP polled
//              |   at once for the host's answer (an echo reply, an ACK), which is sealed and queued in the
//              |   same batch, then sendmmsg: the answer leaves without another thread's wake-up
//
// Threads: a node runs one EventLoop per core (EventLoopGroup, DataPathOptions.EventLoops). Loop i reads queue i of
// each TAP (IFF_MULTI_QUEUE) and serves the sockets of the links given to it (each new link goes to the loop with the
// fewest links), and it writes the frames its links bring through its own TAP queue: tun's flow table then sends the
// host's next packets of that flow out of the same queue (tun_flow_update learns the queue after handing the written
// frame up, so the answer to the very first frame of a flow may leave by another), to the same loop, so the answer
// crosses no thread and a node's links to several peers run on several cores. A flow the host starts goes out of the
// queue its hash picks until an answer has come in; the loop reading it seals and sends on whichever link the switch
// picks (sealing and sockets are safe from any thread, as is the switch). Each loop owns one DataPathBatch, handed to
// the handlers it calls. The control path (signaling, topology, ICE checks and timers, DTLS handshakes, keepalives)
// runs on the thread pool and sends at once (a null batch). A standalone ICE agent's socket gets a loop of its own.

using System.Runtime.InteropServices;
using Overlay.Tap.Linux;

namespace Overlay.Transport;

/// <summary>Something an <see cref="EventLoop"/> watches: called on the loop's thread when its descriptor is readable.</summary>
internal interface IReadableSource
{
    /// <summary>
    /// Reads and handles some of what is ready without blocking, with the loop's <paramref name="batch"/> (the loop
    /// completes it when this returns). It may leave the rest (the descriptor is watched level-triggered, so the loop
    /// comes back after serving the others); it should not throw.
    /// </summary>
    void OnReadable(DataPathBatch batch);
}

/// <summary>
/// One thread that waits on its share of a node's data path at once (Linux <c>epoll(7)</c>): one queue of each TAP
/// device and the UDP sockets of the links given to it (the map at the top of this file). A frame that arrives on a socket is decrypted,
/// switched and written into the TAP, and the host's immediate answer read back and sent, all on this thread, with the
/// loop's one <see cref="DataPathBatch"/>; and writing into the TAP wakes nobody else, since the host's answer comes
/// back on the queue this loop writes and reads. With a thread per descriptor each of those hand-overs costs a
/// wake-up, which on a virtual machine is the larger part of a round trip. A node has one loop per core
/// (<see cref="EventLoopGroup"/>), each serving its share of the links; handlers run one at a time and must not block.
/// </summary>
internal sealed unsafe class EventLoop : IDisposable
{
    private const int MaxEvents = 64;
    private const ulong StopToken = ulong.MaxValue;
    // struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16 bytes).
    private static readonly int s_eventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int s_dataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    private readonly int _epoll;
    private readonly int _stop;
    private readonly Thread _thread;
    private readonly Lock _gate = new();
    private Slot[] _slots = new Slot[16];
    private long _dispatchRound; // non-zero while the loop hands out one epoll_wait's events
    private long _rounds;
    private long _handlerFaults;
    private volatile bool _stopping;
    private uint _generation;
    private int _links, _linksUp;
    private readonly int _queue;
    private MultiMessageReceiver? _receiver;
    private DataPathBatch? _batch;

    private sealed class Slot(int fd, IReadableSource source, uint generation)
    {
        public readonly int Fd = fd;
        public readonly IReadableSource Source = source;
        public readonly uint Generation = generation;
    }

    private EventLoop(int epoll, int stop, string name, int queue)
    {
        _epoll = epoll;
        _stop = stop;
        _queue = queue;
        _thread = new Thread(Run) { IsBackground = true, Name = name };
    }

    /// <summary>True where the loop can run (Linux, 64-bit).</summary>
    public static bool IsSupported => LibC.IsLinux64;

    /// <summary>Handlers that threw (caught and counted; the loop carries on).</summary>
    public long HandlerFaults => Interlocked.Read(ref _handlerFaults);

    /// <summary>Links whose socket this loop serves (counted by whoever assigns them, <see cref="EventLoopGroup.LeastLoaded"/>).</summary>
    public int Links => Volatile.Read(ref _links);

    /// <summary>Counts <paramref name="delta"/> more links on this loop.</summary>
    public void AddLinks(int delta) => Interlocked.Add(ref _links, delta);

    /// <summary>Of <see cref="Links"/>, those that are up (carrying frames).</summary>
    public int LinksUp => Volatile.Read(ref _linksUp);

    /// <summary>Counts <paramref name="delta"/> more links up on this loop.</summary>
    public void AddLinksUp(int delta) => Interlocked.Add(ref _linksUp, delta);

    /// <summary>The NIC queue this loop reads and writes through (<see cref="EventLoopGroup"/>: its index).</summary>
    public int Queue => _queue;

    /// <summary>True on the loop's own thread.</summary>
    public bool IsLoopThread => Thread.CurrentThread == _thread;

    /// <summary>
    /// One receive block for every socket the loop serves (they are read one at a time), instead of one per socket.
    /// Only for use on the loop's thread.
    /// </summary>
    internal MultiMessageReceiver Receiver => _receiver ??= new MultiMessageReceiver();

    /// <summary>
    /// Creates and starts a loop whose batch writes into and polls NIC queue <paramref name="queue"/>; throws
    /// <see cref="PlatformNotSupportedException"/> where <see cref="IsSupported"/> is false.
    /// </summary>
    public static EventLoop Start(string name, int queue = 0)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("the event loop needs Linux epoll on a 64-bit process");
        var epoll = LibC.EpollCreate1(LibC.EPOLL_CLOEXEC);
        if (epoll < 0) throw new InvalidOperationException($"epoll_create1 failed (errno {Marshal.GetLastPInvokeError()})");
        var stop = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (stop < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            LibC.Close(epoll);
            throw new InvalidOperationException($"eventfd failed (errno {errno})");
        }
        var loop = new EventLoop(epoll, stop, name, queue);
        if (loop.Control(LibC.EPOLL_CTL_ADD, stop, StopToken) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            LibC.Close(epoll);
            LibC.Close(stop);
            throw new InvalidOperationException($"epoll_ctl failed for the stop event (errno {errno})");
        }
        loop._thread.Start();
        return loop;
    }

    /// <summary>
    /// Watches <paramref name="fd"/> for reading and calls <paramref name="source"/> on the loop thread when it is.
    /// Returns a registration for <see cref="Unregister"/> (never reused by a later one); throws when the kernel
    /// refuses the descriptor.
    /// </summary>
    public long Register(int fd, IReadableSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            var index = Array.IndexOf(_slots, null);
            if (index < 0)
            {
                index = _slots.Length;
                var grown = new Slot[_slots.Length * 2];
                _slots.CopyTo(grown, 0);
                Volatile.Write(ref _slots, grown);
            }
            var slot = new Slot(fd, source, ++_generation);
            Volatile.Write(ref _slots[index], slot);
            if (Control(LibC.EPOLL_CTL_ADD, fd, Token(index, slot.Generation)) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                _slots[index] = null!;
                throw new InvalidOperationException($"epoll_ctl refused descriptor {fd} (errno {errno})");
            }
            return (long)Token(index, slot.Generation);
        }
    }

    /// <summary>
    /// Stops watching a registration. When this returns the source is not running and will not be called again, so
    /// the descriptor may be closed (on the loop's own thread the current call simply is the last one). Unregistering
    /// twice is harmless.
    /// </summary>
    public void Unregister(long registration)
    {
        var index = (int)(uint)registration;
        lock (_gate)
        {
            var slots = _slots;
            if (SlotFor(slots, (ulong)registration) is not { } slot) return;
            Control(LibC.EPOLL_CTL_DEL, slot.Fd, 0); // may fail once stopping closed epoll: harmless
            Volatile.Write(ref slots[index], null!);
        }
        Interlocked.MemoryBarrier();
        if (IsLoopThread) return;
        // The loop may be inside a round that read the slot before it was cleared: wait for that round to end.
        var round = Interlocked.Read(ref _dispatchRound);
        if (round == 0) return;
        var spin = new SpinWait();
        while (Interlocked.Read(ref _dispatchRound) == round && _thread.IsAlive) spin.SpinOnce(sleep1Threshold: -1);
    }

    private static ulong Token(int index, uint generation) => ((ulong)generation << 32) | (uint)index;

    /// <summary>The slot a token names, if it still holds the registration the token was made for.</summary>
    private static Slot? SlotFor(Slot[] slots, ulong token)
    {
        var index = (int)(uint)token;
        return (uint)index < (uint)slots.Length && Volatile.Read(ref slots[index]) is { } slot && slot.Generation == (uint)(token >> 32) ? slot : null;
    }

    private int Control(int op, int fd, ulong token)
    {
        var ev = stackalloc byte[16];
        *(uint*)ev = LibC.EPOLLIN;
        *(ulong*)(ev + s_dataOffset) = token;
        return LibC.EpollCtl(_epoll, op, fd, ev);
    }

    private void Run()
    {
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * s_eventSize));
        var batch = _batch = new DataPathBatch(_queue); // the loop's, handed to every source it calls
        try
        {
            while (!_stopping)
            {
                var n = LibC.EpollWait(_epoll, events, MaxEvents, -1);
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == LibC.EINTR) continue;
                    return;
                }
                Interlocked.Exchange(ref _dispatchRound, ++_rounds);
                for (var i = 0; i < n && !_stopping; i++)
                {
                    var token = *(ulong*)(events + i * s_eventSize + s_dataOffset);
                    if (token == StopToken) return;
                    if (SlotFor(Volatile.Read(ref _slots), token) is not { } slot) continue;
                    try
                    {
                        slot.Source.OnReadable(batch);
                        batch.Complete(); // sources complete their own bursts; this sends what one that threw left
                    }
#pragma warning disable CA1031 // one faulty source must not stop the loop that serves every link
                    catch (Exception)
#pragma warning restore CA1031
                    {
                        Interlocked.Increment(ref _handlerFaults);
                    }
                }
                Interlocked.Exchange(ref _dispatchRound, 0);
            }
        }
        finally
        {
            Interlocked.Exchange(ref _dispatchRound, 0);
            NativeMemory.Free(events);
            _receiver?.Dispose();
            _receiver = null;
            _batch?.Dispose();
            _batch = null;
        }
    }

    /// <summary>Stops the loop and closes its descriptors (not the registered ones: their owners close those).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
        }
        ulong one = 1;
        LibC.Write(_stop, (byte*)&one, sizeof(ulong));
        if (!IsLoopThread) _thread.Join();
        LibC.Close(_stop);
        LibC.Close(_epoll);
    }
}
