using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Overlay.Tap.Linux.LibC;

namespace Overlay.Transport;

/// <summary>
/// Receives up to <see cref="Batch"/> datagrams per system call with Linux <c>recvmmsg(2)</c> (MSG_WAITFORONE: block for
/// the first, take what else is queued), into buffers and address slots allocated once and pinned. Under load one call
/// brings a whole burst instead of one datagram; when idle it behaves like <c>recvfrom</c>.
/// </summary>
internal sealed unsafe class MultiMessageReceiver : IDisposable
{
    public const int Batch = 32;
    private const int SlotSize = 65536;
    private const int NameSize = 128; // sockaddr_storage
    private const int ControlSize = 64;

    private readonly byte* _memory;
    private readonly MMsgHdr* _headers;
    private readonly IoVec* _vectors;
    private readonly byte* _names;
    private readonly byte* _buffers;
    private readonly byte* _controls;

    public MultiMessageReceiver()
    {
        var size = (nuint)(Batch * (sizeof(MMsgHdr) + sizeof(IoVec) + NameSize + ControlSize + SlotSize));
        _memory = (byte*)NativeMemory.AlignedAlloc(size, 64);
        _headers = (MMsgHdr*)_memory;
        _vectors = (IoVec*)(_memory + Batch * sizeof(MMsgHdr));
        _names = (byte*)(_vectors + Batch);
        _controls = _names + Batch * NameSize;
        _buffers = _controls + Batch * ControlSize;
        for (var i = 0; i < Batch; i++)
        {
            _vectors[i].Base = _buffers + (long)i * SlotSize;
            _vectors[i].Length = SlotSize;
            _headers[i].Header = new MsgHdr
            {
                Name = _names + i * NameSize, NameLength = NameSize, Iov = _vectors + i, IovLength = 1,
                Control = _controls + i * ControlSize, ControlLength = ControlSize,
            };
            _headers[i].Length = 0;
        }
    }

    private int _dirty;

    /// <summary>
    /// Asks the kernel to hand over a run of equal-size datagrams from one sender (sent with UDP GSO, or merged by GRO)
    /// as one buffer (UDP_GRO, Linux 5.0+); <see cref="SegmentSize"/> then tells how to cut it. False where unsupported.
    /// </summary>
    public static bool TryEnableCoalescing(nint fd)
    {
        var on = 1;
        return SetSockOpt((int)fd, SOL_UDP, UDP_GRO, &on, sizeof(int)) == 0;
    }

    /// <summary>True on Linux x64/arm64, where the structures above match the kernel's.</summary>
    public static bool IsSupported => IsLinux64;

    /// <summary>
    /// Takes the datagrams queued on <paramref name="fd"/> (when <paramref name="wait"/>, waiting for the first) and returns
    /// how many arrived: 0 when none did (nothing queued, a timeout or an interruption). -1 means the call is not
    /// available here (use recvfrom); -2 means the socket was closed.
    /// </summary>
    public int Receive(nint fd, bool wait)
    {
        // The kernel rewrites the lengths and flags of the slots a call fills (and perhaps of the one it failed on); the
        // rest still hold what was set, so only those are reset: a call that brings one datagram touches little memory.
        for (var i = 0; i < _dirty; i++)
        {
            _headers[i].Header.NameLength = NameSize;
            _headers[i].Header.ControlLength = ControlSize;
            _headers[i].Header.Flags = 0;
            _headers[i].Length = 0;
        }
        _dirty = 0;
        var n = RecvMmsg((int)fd, _headers, Batch, wait ? MSG_WAITFORONE : MSG_DONTWAIT, null);
        _dirty = n >= 0 ? Math.Min(n + 1, Batch) : 1;
        if (n >= 0) return n;
        return Marshal.GetLastPInvokeError() switch
        {
            EINTR or EAGAIN => 0,
            ENOSYS => -1,
            EBADF => -2,
            _ => 0, // ICMP errors (ECONNREFUSED...) surface on datagram sockets; keep going
        };
    }

    /// <summary>The payload of datagram <paramref name="index"/> of the last <see cref="Receive"/>.</summary>
    public ReadOnlySpan<byte> Datagram(int index) => new(_buffers + (long)index * SlotSize, (int)Math.Min(_headers[index].Length, SlotSize));

    /// <summary>
    /// The size of each datagram within buffer <paramref name="index"/> when the kernel coalesced a run (UDP_GRO), the
    /// last one possibly shorter; 0 when the buffer is one datagram.
    /// </summary>
    public int SegmentSize(int index)
    {
        ref var header = ref _headers[index].Header;
        var control = (byte*)header.Control;
        var length = (long)header.ControlLength;
        // struct cmsghdr { size_t len; int level; int type; } then the data, each aligned to 8 bytes.
        for (long offset = 0; offset + 16 <= length;)
        {
            var cmsgLength = (long)*(nuint*)(control + offset);
            if (cmsgLength < 16 || offset + cmsgLength > length) break;
            if (*(int*)(control + offset + 8) == SOL_UDP && *(int*)(control + offset + 12) == UDP_GRO && cmsgLength >= 20)
                return *(int*)(control + offset + 16);
            offset += (cmsgLength + 7) & ~7L;
        }
        return 0;
    }

    /// <summary>Copies the sender of datagram <paramref name="index"/> into <paramref name="address"/> (the socket's native form).</summary>
    public void Sender(int index, SocketAddress address)
    {
        var length = (int)Math.Min(_headers[index].Header.NameLength, (uint)address.Buffer.Length);
        new ReadOnlySpan<byte>(_names + index * NameSize, length).CopyTo(address.Buffer.Span);
        address.Size = length;
    }

    public void Dispose() => NativeMemory.AlignedFree(_memory);

}
