using System.Net.NetworkInformation;
using System.Runtime.InteropServices;
using Overlay.Tap.Netlink;

namespace Overlay.Tap.Linux;

/// <summary>
/// A Linux TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI), configured through rtnetlink. Each queue has
/// one long-lived receive thread that polls the non-blocking descriptor and an eventfd (for a prompt
/// stop), drains every ready frame into one reusable buffer and hands it to the sink: no thread, task
/// or allocation per frame. Writes go straight to the descriptor and never block.
/// </summary>
public sealed unsafe class TapDevice : IEthernetDevice
{
    // linux/if_tun.h
    private const nuint TUNSETIFF = 0x400454ca;
    private const nuint TUNSETPERSIST = 0x400454cb;
    private const nuint SIOCGIFHWADDR = 0x8927;
    private const short IFF_TAP = 0x0002;
    private const short IFF_NO_PI = 0x1000;
    private const short IFF_MULTI_QUEUE = 0x0100;
    private const int IfReqSize = 40; // struct ifreq
    private const int MaxFrame = 65535 + 18;

    private readonly int[] _queues;
    private readonly Lock[] _readGates;
    private readonly int _stopEvent;
    private readonly Thread[] _threads;
    private readonly TapDeviceOptions _options;
    private IFrameSink? _sink;
    private int _disposed;

    private TapDevice(string name, int[] queues, int stopEvent, TapDeviceOptions options, PhysicalAddress mac)
    {
        Name = name;
        _queues = queues;
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
            var flags = (short)(IFF_TAP | IFF_NO_PI | (options.Queues > 1 ? IFF_MULTI_QUEUE : 0));
            for (var q = 0; q < options.Queues; q++) queues.Add(OpenQueue(options, flags));
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
    public bool TryWrite(ReadOnlySpan<byte> frame)
    {
        if (Volatile.Read(ref _disposed) != 0 || frame.Length < 14 || frame.Length > Mtu + 18)
        {
            Interlocked.Increment(ref Counters.WriteDropsValue);
            return false;
        }
        nint written;
        fixed (byte* p = frame) written = LibC.Write(_queues[0], p, frame.Length);
        if (written != frame.Length)
        {
            Interlocked.Increment(ref Counters.WriteDropsValue);
            return false;
        }
        Interlocked.Increment(ref Counters.FramesWrittenValue);
        Interlocked.Add(ref Counters.BytesWrittenValue, frame.Length);
        return true;
    }

    /// <inheritdoc />
    public int PollReady()
    {
        if (_sink is not { } sink || Volatile.Read(ref _disposed) != 0) return 0;
        var gate = _readGates[0];
        if (!gate.TryEnter()) return 0; // the receive loop is at it: it will take these frames too
        try
        {
            var buffer = t_pollBuffer ??= GC.AllocateUninitializedArray<byte>(MaxFrame, pinned: true);
            fixed (byte* p = buffer) return ReadBurst(_queues[0], p, buffer.Length, sink);
        }
        finally
        {
            gate.Exit();
        }
    }

    [ThreadStatic] private static byte[]? t_pollBuffer;

    /// <summary>Reads and delivers what is ready as one burst; the caller holds the queue's read gate.</summary>
    private int ReadBurst(int fd, byte* p, int length, IFrameSink sink)
    {
        var burst = sink as IFrameBurstSink;
        burst?.OnBurstStart();
        try
        {
            return DrainReady(fd, p, length, sink);
        }
        finally
        {
            burst?.OnBurstEnd();
        }
    }

    private void ReceiveLoop(int queue)
    {
        var fd = _queues[queue];
        var gate = _readGates[queue];
        var buffer = GC.AllocateUninitializedArray<byte>(MaxFrame, pinned: true);
        var sink = _sink!;
        var fds = stackalloc LibC.PollFd[2];
        fds[0] = new LibC.PollFd { Fd = fd, Events = LibC.POLLIN };
        fds[1] = new LibC.PollFd { Fd = _stopEvent, Events = LibC.POLLIN };
        fixed (byte* p = buffer)
        {
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
                lock (gate) ReadBurst(fd, p, buffer.Length, sink);
                if (Volatile.Read(ref _disposed) != 0) return;
            }
        }
    }

    private int DrainReady(int fd, byte* p, int length, IFrameSink sink)
    {
        var frames = 0;
        while (true)
        {
            var n = LibC.Read(fd, p, length);
            if (n <= 0)
            {
                var errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
                if (errno == LibC.EINTR) continue;
                if (errno != LibC.EAGAIN && errno != 0) Interlocked.Increment(ref Counters.ReadErrorsValue);
                return frames;
            }
            frames++;
            Interlocked.Increment(ref Counters.FramesReadValue);
            Interlocked.Add(ref Counters.BytesReadValue, n);
            try
            {
                sink.OnFrame(new ReadOnlySpan<byte>(p, (int)n));
            }
#pragma warning disable CA1031 // the receive loop must survive a faulty sink; the fault is counted
            catch (Exception)
#pragma warning restore CA1031
            {
                Interlocked.Increment(ref Counters.SinkErrorsValue);
            }
        }
    }

    /// <summary>Stops the receive loops and closes the device (which deletes it unless persistent).</summary>
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
        if (string.IsNullOrEmpty(name) || name.Length > 15 || name is "." or ".."
            || name.Any(c => c is '/' or ':' || char.IsWhiteSpace(c) || c > 0x7e || c < 0x21))
            throw new TapDeviceException(TapError.InvalidName, $"'{name}' is not a valid interface name (1-15 printable characters, no '/', ':' or spaces)");
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
