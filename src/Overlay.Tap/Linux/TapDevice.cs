using System.Net.NetworkInformation;
using System.Runtime.InteropServices;
using Overlay.Tap.Netlink;
using Overlay.Tap.Offload;

namespace Overlay.Tap.Linux;

/// <summary>
/// A Linux TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI), configured through rtnetlink. Its queues are read either
/// from the caller's event loop (<see cref="StartPolled"/>, <see cref="PollReady"/>: what a node does) or by one
/// long-lived receive thread per queue (<see cref="Start"/>) that polls the non-blocking descriptor and an eventfd (for
/// a prompt stop); either way every ready frame is drained into the batch's reusable buffer and handed to the sink: no
/// thread, task or allocation per frame. Writes go straight to the descriptor and never block.
/// </summary>
public sealed unsafe class TapDevice : IPolledEthernetDevice, ICoalescingEthernetDevice
{
    // linux/if_tun.h
    private const nuint TUNSETIFF = 0x400454ca;
    private const nuint TUNSETPERSIST = 0x400454cb;
    private const nuint SIOCGIFHWADDR = 0x8927;
    private const nuint TUNSETOFFLOAD = 0x400454d0;
    private const short IFF_VNET_HDR = 0x4000;
    private const uint TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04, TUN_F_TSO_ECN = 0x08;
    private const short IFF_TAP = 0x0002;
    private const short IFF_NO_PI = 0x1000;
    private const short IFF_MULTI_QUEUE = 0x0100;
    private const int IfReqSize = 40; // struct ifreq
    private const int MaxReadsPerBurst = 64;
    private static readonly byte[] s_plainHeader = GC.AllocateArray<byte>(VirtioNetHeader.Size, pinned: true);

    private readonly int[] _queues;
    private readonly IReadOnlyList<int> _readiness;
    private readonly Lock[] _readGates;
    private readonly int _stopEvent;
    private readonly Thread[] _threads;
    private readonly TapDeviceOptions _options;
    private IFrameSink? _sink;
    private int _disposed;
    private volatile string? _fault;

    private readonly bool _offload;

    private TapDevice(string name, int[] queues, int stopEvent, TapDeviceOptions options, PhysicalAddress mac)
    {
        _offload = options.Offload;
        Name = name;
        _queues = queues;
        _readiness = Array.AsReadOnly(queues);
        _stopEvent = stopEvent;
        _options = options;
        MacAddress = mac;
        Mtu = options.Mtu;
        _threads = new Thread[queues.Length];
        _readGates = [.. queues.Select(_ => new Lock())];
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public PhysicalAddress MacAddress { get; }

    /// <inheritdoc />
    public int Mtu { get; }

    /// <summary>The kernel's index of the interface.</summary>
    public int Index { get; private set; }

    /// <inheritdoc />
    public EthernetDeviceCounters Counters { get; } = new();

    /// <summary>
    /// Creates the device, sets its MAC, MTU and addresses, and brings it up. Throws
    /// <see cref="TapDeviceException"/> with a <see cref="TapError"/> naming the cause.
    /// </summary>
    public static TapDevice Create(TapDeviceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!OperatingSystem.IsLinux()) throw new TapDeviceException(TapError.Unsupported, "TAP devices are supported on Linux only");
        ValidateName(options.Name);
        if (options.Mtu is < 68 or > 65535)
            throw new TapDeviceException(TapError.InvalidMtu, $"MTU {options.Mtu} of {options.Name} is outside 68..65535");
        if (options.Queues is < 1 or > 16)
            throw new TapDeviceException(TapError.SystemError, $"{options.Queues} queues for {options.Name}: use 1..16");
        foreach (var address in options.Addresses)
            if (!address.IsValid) throw new TapDeviceException(TapError.InvalidAddress, $"address {address} of {options.Name} is invalid");
        if (options.MacAddress is { } m && (m.GetAddressBytes().Length != 6 || (m.GetAddressBytes()[0] & 1) != 0))
            throw new TapDeviceException(TapError.InvalidAddress, $"MAC {m} of {options.Name} is not a unicast Ethernet address");
        // TUNSETIFF would silently attach to an existing persistent TAP of that name; refuse instead.
        if (RtNetlink.IndexOf(options.Name) != 0)
            throw new TapDeviceException(TapError.NameInUse, $"an interface named {options.Name} already exists");

        var queues = new List<int>();
        var stop = -1;
        try
        {
            var flags = (short)(IFF_TAP | IFF_NO_PI | (options.Queues > 1 ? IFF_MULTI_QUEUE : 0) | (options.Offload ? IFF_VNET_HDR : 0));
            for (var q = 0; q < options.Queues; q++) queues.Add(OpenQueue(options, flags));
            // The virtio_net_hdr stays on (writes of merged runs need it) even where the kernel refuses the offloads.
            if (options.Offload && LibC.Ioctl(queues[0], TUNSETOFFLOAD, (void*)(nint)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)) != 0
                && LibC.Ioctl(queues[0], TUNSETOFFLOAD, (void*)(nint)TUN_F_CSUM) != 0)
                LibC.Ioctl(queues[0], TUNSETOFFLOAD, null);
            if (options.Persist) Ioctl(queues[0], TUNSETPERSIST, 1, options.Name, "make persistent");

            stop = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
            if (stop < 0) throw Errno("create the stop event for", options.Name, Marshal.GetLastPInvokeError());

            var index = RtNetlink.IndexOf(options.Name);
            if (index == 0) throw new TapDeviceException(TapError.SystemError, $"{options.Name} vanished right after creation");
            using var netlink = new RtNetlink();
            if (options.MacAddress is { } mac) netlink.SetMacAddress(index, mac.GetAddressBytes(), options.Name);
            netlink.SetMtu(index, options.Mtu, options.Name);
            foreach (var address in options.Addresses) netlink.AddAddress(index, address, options.Name);
            if (options.Up) netlink.SetUp(index, true, options.Name);

            var actualMac = ReadMac(queues[0], options.Name);
            return new TapDevice(options.Name, [.. queues], stop, options, actualMac) { Index = index };
        }
        catch
        {
            foreach (var fd in queues) LibC.Close(fd);
            if (stop >= 0) LibC.Close(stop);
            throw;
        }
    }

    /// <inheritdoc />
    public void Start(IFrameSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        if (Interlocked.CompareExchange(ref _sink, sink, null) is not null)
            throw new InvalidOperationException($"{Name} is already started");
        for (var q = 0; q < _queues.Length; q++)
        {
            var queue = q;
            _threads[q] = new Thread(() => ReceiveLoop(queue)) { IsBackground = true, Name = $"tap {Name} rx{q}" };
            _threads[q].Start();
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Frames written with a batch go through the batch's queue (<see cref="DeviceBatch"/>), those written alone through
    /// the first; Linux steers the host's packets of a flow to the queue that last carried one of its frames in.
    /// </remarks>
    public IReadOnlyList<int> ReadinessDescriptors => _readiness;

    /// <inheritdoc />
    public void StartPolled(IFrameSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        if (Interlocked.CompareExchange(ref _sink, sink, null) is not null)
            throw new InvalidOperationException($"{Name} is already started");
    }

    /// <inheritdoc />
    public bool TryWrite(ReadOnlySpan<byte> frame) => WriteOne(frame, _queues[0]);

    /// <inheritdoc />
    public bool TryWrite(ReadOnlySpan<byte> frame, DeviceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!_offload || !Acceptable(frame))
        {
            FlushWrites(batch); // what the batch holds for the device goes first: frames keep their order
            return WriteOne(frame, QueueOf(batch));
        }
        var coalescer = batch.Coalescer;
        if (coalescer.Segments > 0)
        {
            if (coalescer.Owner == this && coalescer.TryAppend(frame)) return true;
            var owner = (TapDevice)coalescer.Owner!;
            owner.WriteHeld(coalescer, owner.QueueOf(batch));
        }
        if (coalescer.TryStart(frame))
        {
            coalescer.Owner = this;
            return true;
        }
        return WriteOne(frame, QueueOf(batch));
    }

    /// <inheritdoc />
    public void FlushWrites(DeviceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.HeldFor(this) is { } held) WriteHeld(held, QueueOf(batch));
    }

    private bool Acceptable(ReadOnlySpan<byte> frame) => frame.Length >= 14 && frame.Length <= Mtu + 18;

    /// <summary>The descriptor of the batch's queue (the first when the device has fewer).</summary>
    private int QueueOf(DeviceBatch batch) => (uint)batch.Queue < (uint)_queues.Length ? _queues[batch.Queue] : _queues[0];

    private bool WriteOne(ReadOnlySpan<byte> frame, int fd)
    {
        if (Volatile.Read(ref _disposed) != 0 || !Acceptable(frame))
        {
            Interlocked.Increment(ref Counters.WriteDropsValue);
            return false;
        }
        nint written;
        fixed (byte* p = frame)
        {
            if (_offload)
            {
                fixed (byte* h = s_plainHeader)
                {
                    var vectors = stackalloc LibC.IoVec[2];
                    vectors[0] = new LibC.IoVec { Base = h, Length = VirtioNetHeader.Size };
                    vectors[1] = new LibC.IoVec { Base = p, Length = (nuint)frame.Length };
                    written = LibC.Writev(fd, vectors, 2) - VirtioNetHeader.Size;
                }
            }
            else
            {
                written = LibC.Write(fd, p, frame.Length);
            }
        }
        if (written != frame.Length)
        {
            Interlocked.Increment(ref Counters.WriteDropsValue);
            return false;
        }
        Interlocked.Increment(ref Counters.FramesWrittenValue);
        Interlocked.Add(ref Counters.BytesWrittenValue, frame.Length);
        return true;
    }

    /// <summary>Writes the run the coalescer holds for this device as one packet.</summary>
    private void WriteHeld(TcpCoalescer held, int fd)
    {
        var segments = held.Segments;
        var bytes = held.FrameBytes;
        var packet = held.Finish();
        nint written = -1;
        if (Volatile.Read(ref _disposed) == 0)
            fixed (byte* p = packet) written = LibC.Write(fd, p, packet.Length);
        if (written != packet.Length)
        {
            Interlocked.Add(ref Counters.WriteDropsValue, segments);
            return;
        }
        Interlocked.Add(ref Counters.FramesWrittenValue, segments);
        Interlocked.Add(ref Counters.BytesWrittenValue, bytes);
        if (segments > 1) Interlocked.Add(ref Counters.CoalescedWritesValue, segments);
    }

    /// <inheritdoc />
    public string? Fault => _fault;

    /// <inheritdoc />
    public int PollReady(int queue, DeviceBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(queue);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queue, _queues.Length);
        if (_fault is not null) return -1;
        if (_sink is not { } sink || Volatile.Read(ref _disposed) != 0) return 0;
        var gate = _readGates[queue];
        // Not when this thread is reading the queue already (a sink's burst end polling back): frames stay in order.
        if (gate.IsHeldByCurrentThread || !gate.TryEnter()) return 0; // or another thread is at it: it takes these too
        try
        {
            var frames = ReadBurst(_queues[queue], batch, sink);
            return _fault is null ? frames : -1;
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>
    /// Reads and delivers what is ready; the caller holds the queue's read gate. The first read is a burst of its own, so
    /// a lone frame (a ping, a request) is on its way before the read that finds the queue empty; what follows it is
    /// one burst.
    /// </summary>
    private int ReadBurst(int fd, DeviceBatch batch, IFrameSink sink)
    {
        var frames = ReadBurst(fd, batch, sink, 1, out var reads);
        if (reads == 1) frames += ReadBurst(fd, batch, sink, MaxReadsPerBurst - 1, out _);
        return frames;
    }

    private int ReadBurst(int fd, DeviceBatch batch, IFrameSink sink, int limit, out int reads)
    {
        try
        {
            fixed (byte* p = batch.ReadBuffer) return DrainReady(fd, p, batch, sink, limit, out reads);
        }
        finally
        {
            (sink as IFrameBurstSink)?.OnBurstEnd(batch);
        }
    }

    /// <summary>A queue's own receive thread (<see cref="Start"/>): wait for readiness, then read as the caller of <see cref="PollReady"/> would.</summary>
    private void ReceiveLoop(int queue)
    {
        var fd = _queues[queue];
        var gate = _readGates[queue];
        var batch = new DeviceBatch { Queue = queue }; // this thread's, for as long as it runs; it writes answers through its queue
        var sink = _sink!;
        var fds = stackalloc LibC.PollFd[2];
        fds[0] = new LibC.PollFd { Fd = fd, Events = LibC.POLLIN };
        fds[1] = new LibC.PollFd { Fd = _stopEvent, Events = LibC.POLLIN };
        while (Volatile.Read(ref _disposed) == 0)
        {
            if (LibC.Poll(fds, 2, -1) < 0)
            {
                if (Marshal.GetLastPInvokeError() == LibC.EINTR) continue;
                Interlocked.Increment(ref Counters.ReadErrorsValue);
                return;
            }
            if (fds[1].Revents != 0) return;
            // Drain everything that is ready before polling again: one wake-up, many frames. The gate keeps frames
            // in order when a writer's thread drains too (PollReady): a burst is read and sent before the next.
            lock (gate) ReadBurst(fd, batch, sink);
            if (Volatile.Read(ref _disposed) != 0 || _fault is not null) return;
        }
    }

    /// <summary>
    /// Reads what the host has ready, up to <paramref name="limit"/> packets (<paramref name="reads"/> tells how many
    /// there were): a host that sends without pause must not keep an event loop from its other descriptors (the rest is
    /// still ready when the caller polls again).
    /// </summary>
    private int DrainReady(int fd, byte* p, DeviceBatch batch, IFrameSink sink, int limit, out int reads)
    {
        var frames = 0;
        for (reads = 0; reads < limit; reads++)
        {
            var n = LibC.Read(fd, p, batch.ReadBuffer.Length);
            if (n <= 0)
            {
                var errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
                if (errno == LibC.EINTR) continue;
                if (errno != LibC.EAGAIN && errno != 0) Interlocked.Increment(ref Counters.ReadErrorsValue);
                // The interface is gone (deleted under us) or the descriptor is: it will never read again, and
                // polling it would report the error at once, for ever.
                if (errno is LibC.EBADFD or LibC.EBADF or LibC.ENODEV && Volatile.Read(ref _disposed) == 0)
                    _fault ??= $"{Name} can no longer be read ({LibC.Describe(errno)}): the interface was deleted or detached";
                return frames;
            }
            try
            {
                frames += _offload ? DeliverOffloaded(p, (int)n, batch, sink) : Deliver(p, (int)n, batch, sink);
            }
#pragma warning disable CA1031 // the receive loop must survive a faulty sink; the fault is counted
            catch (Exception)
#pragma warning restore CA1031
            {
                Interlocked.Increment(ref Counters.SinkErrorsValue);
            }
        }
        return frames;
    }

    private int Deliver(byte* p, int n, DeviceBatch batch, IFrameSink sink)
    {
        Interlocked.Increment(ref Counters.FramesReadValue);
        Interlocked.Add(ref Counters.BytesReadValue, n);
        sink.OnFrame(new ReadOnlySpan<byte>(p, n), batch);
        return 1;
    }

    /// <summary>A read with its virtio_net_hdr: plain frames go as they are; the rest is finished (checksum, TSO) first.</summary>
    private int DeliverOffloaded(byte* p, int n, DeviceBatch batch, IFrameSink sink)
    {
        if (n <= VirtioNetHeader.Size)
        {
            Interlocked.Increment(ref Counters.ReadErrorsValue);
            return 0;
        }
        var header = VirtioNetHeader.Read(new ReadOnlySpan<byte>(p, VirtioNetHeader.Size));
        var packet = new Span<byte>(p + VirtioNetHeader.Size, n - VirtioNetHeader.Size);
        var frames = FrameOffload.Deliver(header, packet, batch.Scratch, sink, batch);
        if (frames < 0)
        {
            Interlocked.Increment(ref Counters.ReadErrorsValue);
            return 0;
        }
        Interlocked.Add(ref Counters.FramesReadValue, frames);
        Interlocked.Add(ref Counters.BytesReadValue, packet.Length);
        if (header.GsoType != VirtioNetHeader.GsoNone) Interlocked.Increment(ref Counters.SegmentedReadsValue);
        return frames;
    }

    /// <summary>
    /// Stops the receive loops and closes the device (which deletes it unless persistent). A caller that polls the
    /// device stops watching its descriptors first.
    /// </summary>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return ValueTask.CompletedTask;
        ulong one = 1;
        LibC.Write(_stopEvent, (byte*)&one, sizeof(ulong));
        foreach (var thread in _threads) thread?.Join();
        foreach (var fd in _queues) LibC.Close(fd);
        LibC.Close(_stopEvent);
        return ValueTask.CompletedTask;
    }

    private static int OpenQueue(TapDeviceOptions options, short flags)
    {
        var fd = LibC.Open(options.DevicePath, LibC.O_RDWR | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is LibC.ENOENT or LibC.ENODEV or LibC.ENXIO)
                throw new TapDeviceException(TapError.NoTunDevice, $"cannot create {options.Name}: {options.DevicePath} is missing (load the tun module, or give the container /dev/net/tun)", errno);
            throw Errno("open " + options.DevicePath + " for", options.Name, errno);
        }
        try
        {
            var ifr = stackalloc byte[IfReqSize];
            new Span<byte>(ifr, IfReqSize).Clear();
            System.Text.Encoding.ASCII.GetBytes(options.Name, new Span<byte>(ifr, 15));
            *(short*)(ifr + 16) = flags;
            if (LibC.Ioctl(fd, TUNSETIFF, ifr) != 0) throw Errno("create", options.Name, Marshal.GetLastPInvokeError());
            return fd;
        }
        catch
        {
            LibC.Close(fd);
            throw;
        }
    }

    private static void Ioctl(int fd, nuint request, nint value, string name, string what)
    {
        if (LibC.Ioctl(fd, request, (void*)value) != 0) throw Errno(what, name, Marshal.GetLastPInvokeError());
    }

    private static TapDeviceException Errno(string what, string name, int errno) => errno switch
    {
        LibC.EPERM or LibC.EACCES => new TapDeviceException(TapError.PermissionDenied,
            $"cannot {what} {name}: {LibC.Describe(errno)}; TAP devices need CAP_NET_ADMIN (run as root or grant the capability)", errno),
        LibC.EBUSY => new TapDeviceException(TapError.NameInUse, $"cannot {what} {name}: the name is in use", errno),
        LibC.EINVAL => new TapDeviceException(TapError.InvalidName, $"cannot {what} {name}: the kernel refused it ({LibC.Describe(errno)})", errno),
        _ => new TapDeviceException(TapError.SystemError, $"cannot {what} {name}: {LibC.Describe(errno)}", errno),
    };

    private static void ValidateName(string name)
    {
        if (!InterfaceName.IsValid(name))
            throw new TapDeviceException(TapError.InvalidName, $"'{name}' is not a valid interface name ({InterfaceName.Rule})");
    }

    /// <summary>SIOCGIFHWADDR on the TAP descriptor itself, so it works from inside any network namespace.</summary>
    private static PhysicalAddress ReadMac(int fd, string name)
    {
        var ifr = stackalloc byte[IfReqSize];
        new Span<byte>(ifr, IfReqSize).Clear();
        if (LibC.Ioctl(fd, SIOCGIFHWADDR, ifr) != 0) throw Errno("read the MAC of", name, Marshal.GetLastPInvokeError());
        return new PhysicalAddress(new ReadOnlySpan<byte>(ifr + 18, 6).ToArray()); // ifr_hwaddr.sa_data
    }

    /// <inheritdoc />
    public override string ToString() => $"tap {Name} ({MacAddress}, mtu {Mtu}, {_queues.Length} queue(s){(_options.Persist ? ", persistent" : "")})";
}
