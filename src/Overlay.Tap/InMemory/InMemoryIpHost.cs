using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Threading.Channels;

using Overlay.Switching.Frames;

namespace Overlay.Tap.InMemory;

/// <summary>
/// A minimal IPv4 host behind an <see cref="InMemoryEthernetDevice"/>, standing in for the kernel where
/// there is none (demo, simulation): it answers ARP (RFC 826) and ICMP echo (RFC 792), resolves and
/// pings other hosts, and counts the frames of a test EtherType it receives. Frames it sends go out on
/// its own loop, never on the caller's thread, so a switch delivering to it is never re-entered.
/// </summary>
public sealed class InMemoryIpHost : IFrameSink, IAsyncDisposable
{
    private const ushort EtherTypeIPv4 = 0x0800;
    private const ushort EtherTypeArp = 0x0806;
    private static readonly TimeSpan ArpRetransmit = TimeSpan.FromSeconds(1);

    /// <summary>An IEEE local experimental EtherType used for test broadcasts.</summary>
    public const ushort EtherTypeProbe = 0x88B5;

    private readonly InMemoryEthernetDevice _device;
    private readonly byte[] _mac;
    private readonly Channel<byte[]> _outgoing = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<uint, byte[]> _arp = new();
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _resolving = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<long>> _pings = new();
    private readonly ConcurrentDictionary<ulong, int> _probes = new();
    private readonly Task _sender;
    private int _pingSequence;

    /// <summary>Attaches a host with address <paramref name="address"/> to <paramref name="device"/>.</summary>
    public InMemoryIpHost(InMemoryEthernetDevice device, IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(address);
        if (address.AddressFamily != AddressFamily.InterNetwork) throw new ArgumentException("IPv4 only", nameof(address));
        _device = device;
        _mac = device.MacAddress.GetAddressBytes();
        Address = address;
        device.HostReceiver = this;
        _sender = Task.Run(SendLoopAsync);
    }

    /// <summary>The host's IPv4 address.</summary>
    public IPAddress Address { get; }

    /// <summary>Probe broadcasts received, by (sender MAC, probe number).</summary>
    public IReadOnlyDictionary<ulong, int> ProbesReceived => _probes;

    /// <summary>Resolves <paramref name="target"/> with ARP.</summary>
    public async Task<PhysicalAddress> ResolveAsync(IPAddress target, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(target);
        var key = Key(target);
        if (_arp.TryGetValue(key, out var known)) return new PhysicalAddress(known);
        var waiter = _resolving.GetOrAdd(key, _ => new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously));
        var request = new byte[42];
        WriteEthernet(request, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], EtherTypeArp);
        WriteArp(request.AsSpan(14), operation: 1, _mac, Address, new byte[6], target);
        // As the kernel does (RFC 1122 §2.3.2.1 leaves the rate to the host; Linux sends up to 3 probes a second apart), the
        // request is sent again each second until it is answered: one request lost on the way is not a failure.
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            await _outgoing.Writer.WriteAsync(request, cancellationToken).ConfigureAwait(false);
            var left = timeout - Stopwatch.GetElapsedTime(started);
            if (left <= TimeSpan.Zero) throw new TimeoutException($"no ARP reply from {target} within {timeout}");
            try
            {
                var mac = await waiter.Task.WaitAsync(left < ArpRetransmit ? left : ArpRetransmit, cancellationToken).ConfigureAwait(false);
                return new PhysicalAddress(mac);
            }
            // Timers may fire a little early against the stopwatch: a wait that ends within 50 ms of the deadline is the last.
            catch (TimeoutException) when (timeout - Stopwatch.GetElapsedTime(started) > TimeSpan.FromMilliseconds(50))
            {
            }
        }
    }

    /// <summary>Sends one ICMP echo request (after ARP) and returns the round-trip time.</summary>
    public async Task<TimeSpan> PingAsync(IPAddress target, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var started = Stopwatch.GetTimestamp();
        var mac = (await ResolveAsync(target, timeout, cancellationToken).ConfigureAwait(false)).GetAddressBytes();
        var sequence = Interlocked.Increment(ref _pingSequence) & 0xffff;
        var reply = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pings[sequence] = reply;
        var frame = new byte[14 + 20 + 8 + 32];
        WriteEthernet(frame, mac, EtherTypeIPv4);
        WriteIcmpEcho(frame.AsSpan(14), Address, target, type: 8, identifier: 0x0ae1, (ushort)sequence, frame.AsSpan(14 + 28));
        var sent = Stopwatch.GetTimestamp();
        await _outgoing.Writer.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
        try
        {
            var received = await reply.Task.WaitAsync(timeout - Stopwatch.GetElapsedTime(started), cancellationToken).ConfigureAwait(false);
            return Stopwatch.GetElapsedTime(sent, received);
        }
        finally
        {
            _pings.TryRemove(sequence, out _);
        }
    }

    /// <summary>Broadcasts probe number <paramref name="number"/> (EtherType <see cref="EtherTypeProbe"/>).</summary>
    public ValueTask BroadcastProbeAsync(int number, CancellationToken cancellationToken = default)
    {
        var frame = new byte[60];
        WriteEthernet(frame, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], EtherTypeProbe);
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(14), number);
        return _outgoing.Writer.WriteAsync(frame, cancellationToken);
    }

    /// <summary>A frame delivered to the host by the device.</summary>
    public void OnFrame(ReadOnlySpan<byte> frame, DeviceBatch? batch)
    {
        if (frame.Length < 14) return;
        var type = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        var payload = frame[14..];
        switch (type)
        {
            case EtherTypeArp when payload.Length >= 28:
                OnArp(payload);
                break;
            case EtherTypeIPv4 when payload.Length >= 28:
                OnIPv4(frame[6..12], payload);
                break;
            case EtherTypeProbe when payload.Length >= 4:
                var key = (MacKey(frame[6..12]) << 16) ^ (ulong)(uint)BinaryPrimitives.ReadInt32BigEndian(payload);
                _probes.AddOrUpdate(key, 1, (_, n) => n + 1);
                break;
        }
    }

    private void OnArp(ReadOnlySpan<byte> arp)
    {
        var operation = BinaryPrimitives.ReadUInt16BigEndian(arp[6..]);
        var senderMac = arp.Slice(8, 6).ToArray();
        var senderIp = BinaryPrimitives.ReadUInt32BigEndian(arp[14..]);
        var targetIp = BinaryPrimitives.ReadUInt32BigEndian(arp[24..]);
        _arp[senderIp] = senderMac;
        if (_resolving.TryRemove(senderIp, out var waiter)) waiter.TrySetResult(senderMac);
        if (operation == 1 && targetIp == Key(Address))
        {
            var reply = new byte[42];
            WriteEthernet(reply, senderMac, EtherTypeArp);
            WriteArp(reply.AsSpan(14), operation: 2, _mac, Address, senderMac, new IPAddress(BinaryPrimitives.ReverseEndianness(senderIp)));
            _outgoing.Writer.TryWrite(reply);
        }
    }

    private void OnIPv4(ReadOnlySpan<byte> sourceMac, ReadOnlySpan<byte> ip)
    {
        var headerLength = (ip[0] & 0x0f) * 4;
        if (ip[0] >> 4 != 4 || headerLength < 20 || ip.Length < headerLength + 8 || ip[9] != 1) return; // ICMP only
        if (BinaryPrimitives.ReadUInt32BigEndian(ip[16..]) != Key(Address)) return;
        var icmp = ip[headerLength..Math.Min(ip.Length, BinaryPrimitives.ReadUInt16BigEndian(ip[2..]))];
        var sequence = BinaryPrimitives.ReadUInt16BigEndian(icmp[6..]);
        if (icmp[0] == 0 && _pings.TryGetValue(sequence, out var pending))
        {
            pending.TrySetResult(Stopwatch.GetTimestamp());
        }
        else if (icmp[0] == 8)
        {
            var source = new IPAddress(ip.Slice(12, 4));
            var reply = new byte[14 + 20 + icmp.Length];
            WriteEthernet(reply, sourceMac, EtherTypeIPv4);
            WriteIcmpEcho(reply.AsSpan(14), Address, source, type: 0, BinaryPrimitives.ReadUInt16BigEndian(icmp[4..]), sequence, icmp[8..]);
            _outgoing.Writer.TryWrite(reply);
        }
    }

    private async Task SendLoopAsync()
    {
        await foreach (var frame in _outgoing.Reader.ReadAllAsync().ConfigureAwait(false))
            _device.SendFromHost(frame);
    }

    private void WriteEthernet(Span<byte> frame, ReadOnlySpan<byte> destination, ushort etherType)
    {
        destination.CopyTo(frame);
        _mac.CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], etherType);
    }

    private static void WriteArp(Span<byte> arp, ushort operation, ReadOnlySpan<byte> senderMac, IPAddress senderIp, ReadOnlySpan<byte> targetMac, IPAddress targetIp)
    {
        BinaryPrimitives.WriteUInt16BigEndian(arp, 1);              // hardware: Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(arp[2..], EtherTypeIPv4);
        arp[4] = 6;
        arp[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(arp[6..], operation);
        senderMac.CopyTo(arp[8..]);
        senderIp.TryWriteBytes(arp[14..], out _);
        targetMac.CopyTo(arp[18..]);
        targetIp.TryWriteBytes(arp[24..], out _);
    }

    private static void WriteIcmpEcho(Span<byte> ip, IPAddress source, IPAddress destination, byte type, ushort identifier, ushort sequence, ReadOnlySpan<byte> data)
    {
        var total = 20 + 8 + data.Length;
        ip[..20].Clear();
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)total);
        ip[8] = 64;  // TTL
        ip[9] = 1;   // ICMP
        source.TryWriteBytes(ip[12..], out _);
        destination.TryWriteBytes(ip[16..], out _);
        InternetChecksum.SetIPv4HeaderChecksum(ip[..20]);
        var icmp = ip.Slice(20, 8 + data.Length);
        icmp.Clear();
        icmp[0] = type;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], sequence);
        data.CopyTo(icmp[8..]);
        InternetChecksum.Store(icmp[2..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(icmp)));
    }

    private static uint Key(IPAddress address)
    {
        Span<byte> b = stackalloc byte[4];
        address.TryWriteBytes(b, out _);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    private static ulong MacKey(ReadOnlySpan<byte> mac)
    {
        ulong key = 0;
        foreach (var b in mac) key = (key << 8) | b;
        return key;
    }

    /// <summary>Stops the send loop.</summary>
    public async ValueTask DisposeAsync()
    {
        _outgoing.Writer.TryComplete();
        await _sender.ConfigureAwait(false);
    }
}
