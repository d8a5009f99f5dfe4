using System.Net;
using System.Runtime.InteropServices;
using static Overlay.Tap.Linux.LibC;

namespace Overlay.Transport;

/// <summary>
/// Datagrams waiting to leave with one <c>sendmmsg(2)</c> per socket instead of one <c>sendto</c> each: up to
/// <see cref="Capacity"/> copies in native memory allocated once, with the headers, iovecs, addresses and GSO control
/// messages that send them. Owned by a <see cref="DataPathBatch"/>; freed when it is disposed.
/// </summary>
internal sealed unsafe class SendQueue : IDisposable
{
    // A TSO read of 64 KiB brings up to 48 frames (45 at a 1,500-byte path's largest MTU): the queue holds more than one
    // read's, so a read's frames leave with one sendmmsg and in one or two segmented runs, not cut at 32.
    public const int Capacity = 64;
    public const int SlotSize = 2048;
    public const int NameSize = 128;
    private const int ControlSize = 24; // CMSG_SPACE(sizeof(uint16_t)) on x64/arm64
    // UDP GSO: at most this many bytes and segments (UDP_MAX_SEGMENTS) per message. The bytes are bounded by the IPv4 total
    // length (65,535 less the 20-byte IP and 8-byte UDP headers: 65,507); IPv6's payload length allows 65,527. 44 datagrams
    // of 1,472 bytes (the largest a 1,500-byte IPv4 path takes) make 64,768.
    private const int MaxSegmentedBytes = 65507, MaxSegments = 64;
    private readonly byte* _memory;
    private readonly MMsgHdr* _headers;
    private readonly IoVec* _vectors;
    private readonly byte* _names;
    private readonly byte* _buffers;
    private readonly MMsgHdr* _groups;
    private readonly byte* _controls;
    private readonly int* _groupStart;
    private readonly int* _groupCount;
    private byte* _lent; // the slot lent by Lend, until EndLoan
    private bool _disposed;

    public SendQueue()
    {
        var perSlot = sizeof(MMsgHdr) * 2 + sizeof(IoVec) + NameSize + SlotSize + ControlSize + sizeof(int) * 2;
        _memory = (byte*)NativeMemory.AlignedAlloc((nuint)(Capacity * perSlot), 64);
        _headers = (MMsgHdr*)_memory;
        _groups = _headers + Capacity;
        _vectors = (IoVec*)(_groups + Capacity);
        _names = (byte*)(_vectors + Capacity);
        _controls = _names + Capacity * NameSize;
        _groupStart = (int*)(_controls + Capacity * ControlSize);
        _groupCount = _groupStart + Capacity;
        _buffers = (byte*)(_groupCount + Capacity);
    }

    /// <summary>Datagrams queued.</summary>
    public int Count;

    /// <summary>The socket they are for (a queue holds one socket's datagrams at a time).</summary>
    public UdpMux? Mux;

    /// <summary>True when a datagram of that size to that address can be queued (else it is sent at once).</summary>
    public static bool Fits(int datagramLength, int addressLength) => datagramLength <= SlotSize && addressLength <= NameSize;

    /// <summary>
    /// Lends the slot the next <see cref="Add"/> fills (the queue is sent first when full), to build one datagram in: added
    /// from there it is queued where it lies, not copied. Empty while a slot is lent already. Until <see cref="EndLoan"/>.
    /// </summary>
    public Span<byte> Lend()
    {
        if (_lent is not null) return default;
        if (Count == Capacity) Flush();
        _lent = _buffers + (long)Count * SlotSize;
        return new Span<byte>(_lent, SlotSize);
    }

    /// <summary>Ends the loan of <see cref="Lend"/>, whether or not its datagram was added.</summary>
    public void EndLoan() => _lent = null;

    /// <summary>
    /// False when <paramref name="datagram"/> may not be added now: a slot is lent and the datagram is not the one in it
    /// (copied into the next slot, it would overwrite the lent one).
    /// </summary>
    public bool MayAdd(ReadOnlySpan<byte> datagram)
    {
        if (_lent is null) return true;
        fixed (byte* d = datagram) return d >= _lent && d + datagram.Length <= _lent + SlotSize;
    }

    /// <summary>Queues a copy of <paramref name="datagram"/>, or the datagram itself when it lies in the slot this fills.</summary>
    public void Add(UdpMux mux, ReadOnlySpan<byte> datagram, SocketAddress destination)
    {
        var i = Count++;
        Mux = mux;
        var slot = _buffers + (long)i * SlotSize;
        byte* start;
        fixed (byte* d = datagram)
        {
            if (d >= slot && d + datagram.Length <= slot + SlotSize)
            {
                start = d; // built where it is sent from (Lend): no copy
            }
            else
            {
                datagram.CopyTo(new Span<byte>(slot, SlotSize)); // from a lent slot too, when a flush moved the next one
                start = slot;
            }
        }
        var name = _names + i * NameSize;
        destination.Buffer.Span[..destination.Size].CopyTo(new Span<byte>(name, NameSize));
        _vectors[i] = new IoVec { Base = start, Length = (nuint)datagram.Length };
        _headers[i] = new MMsgHdr { Header = new MsgHdr { Name = name, NameLength = (uint)destination.Size, Iov = _vectors + i, IovLength = 1 } };
    }

    /// <summary>Sends what is queued, now.</summary>
    public void Flush()
    {
        var count = Count;
        var mux = Mux;
        Count = 0;
        Mux = null;
        if (count == 0 || mux is null) return;
        mux.SendQueued(count, this);
    }

    /// <summary>
    /// Sends the queued datagrams; returns how many went. With <paramref name="segmentation"/> (UDP GSO, Linux 4.18+),
    /// each run of datagrams to one destination whose sizes are equal (the last may be shorter) goes as one message
    /// that the kernel cuts into those datagrams as late as it can: one trip through the stack for the run instead
    /// of one per datagram. A kernel or route that refuses it turns <paramref name="segmentation"/> off and the run
    /// goes datagram by datagram. <paramref name="segmented"/> counts the datagrams that went in runs.
    /// </summary>
    public int Send(nint fd, int count, ref bool segmentation, out int segmented)
    {
        segmented = 0;
        if (!segmentation) return SendEach(fd, 0, count);
        var groups = Group(count);
        int next = 0, sent = 0;
        while (next < groups)
        {
            var n = SendMmsg((int)fd, _groups + next, (uint)(groups - next), 0);
            if (n > 0)
            {
                for (var g = next; g < next + n; g++)
                {
                    sent += _groupCount[g];
                    if (_groupCount[g] > 1) segmented += _groupCount[g];
                }
                next += n;
                continue;
            }
            var errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            if (errno == EINTR) continue;
            if (_groupCount[next] > 1 && errno is EIO or EINVAL or EMSGSIZE or ENOPROTOOPT or EOPNOTSUPP)
            {
                // No GSO here (no checksum offload on the route, an old kernel): from now on, one by one.
                segmentation = false;
                sent += SendEach(fd, _groupStart[next], _groupCount[next]);
                for (var g = next + 1; g < groups; g++) sent += SendEach(fd, _groupStart[g], _groupCount[g]);
                return sent;
            }
            next++; // the kernel refused this one (a pending ICMP error, a full buffer): drop it, go on
        }
        return sent;
    }

    /// <summary>Builds the messages for <see cref="Send"/>: runs of equal-size datagrams to one destination.</summary>
    private int Group(int count)
    {
        var groups = 0;
        var i = 0;
        while (i < count)
        {
            var size = (int)_vectors[i].Length;
            var name = _names + i * NameSize;
            var nameLength = _headers[i].Header.NameLength;
            var j = i + 1;
            var total = size;
            while (j < count && j - i < MaxSegments && total + (int)_vectors[j].Length <= MaxSegmentedBytes
                   && (int)_vectors[j].Length <= size && _headers[j].Header.NameLength == nameLength
                   && new ReadOnlySpan<byte>(_names + j * NameSize, (int)nameLength).SequenceEqual(new ReadOnlySpan<byte>(name, (int)nameLength)))
            {
                var shorter = (int)_vectors[j].Length < size;
                total += (int)_vectors[j].Length;
                j++;
                if (shorter) break; // a shorter datagram can only end a run
            }
            var header = _headers[i].Header;
            header.IovLength = (nuint)(j - i);
            if (j - i > 1)
            {
                var control = _controls + groups * ControlSize;
                new Span<byte>(control, ControlSize).Clear();
                *(nuint*)control = 18;                 // cmsg_len = CMSG_LEN(2)
                *(int*)(control + 8) = SOL_UDP;         // cmsg_level
                *(int*)(control + 12) = UDP_SEGMENT;    // cmsg_type
                *(ushort*)(control + 16) = (ushort)size;
                header.Control = control;
                header.ControlLength = ControlSize;
            }
            _groups[groups] = new MMsgHdr { Header = header };
            _groupStart[groups] = i;
            _groupCount[groups] = j - i;
            groups++;
            i = j;
        }
        return groups;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        NativeMemory.AlignedFree(_memory);
    }

    /// <summary>sendmmsg datagram by datagram until each went or was refused (refused ones are skipped).</summary>
    private int SendEach(nint fd, int start, int count)
    {
        int next = start, end = start + count, sent = 0;
        while (next < end)
        {
            var n = SendMmsg((int)fd, _headers + next, (uint)(end - next), 0);
            if (n > 0)
            {
                next += n;
                sent += n;
            }
            else if (n < 0 && Marshal.GetLastPInvokeError() == EINTR)
            {
                continue;
            }
            else
            {
                next++; // the kernel refused this one (a pending ICMP error, a full buffer): drop it, go on
            }
        }
        return sent;
    }
}
