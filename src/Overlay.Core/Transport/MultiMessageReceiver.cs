using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Overlay.Transport.MultiMessage;

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
    private const int MsgWaitForOne = 0x10000;
    private const int EINTR = 4, EAGAIN = 11, ENOSYS = 38, EBADF = 9;

    private readonly byte* _memory;
    private readonly MMsgHdr* _headers;
    private readonly IoVec* _vectors;
    private readonly byte* _names;
    private readonly byte* _buffers;

    public MultiMessageReceiver()
    {
        var size = (nuint)(Batch * (sizeof(MMsgHdr) + sizeof(IoVec) + NameSize + SlotSize));
        _memory = (byte*)NativeMemory.AlignedAlloc(size, 64);
        _headers = (MMsgHdr*)_memory;
        _vectors = (IoVec*)(_memory + Batch * sizeof(MMsgHdr));
        _names = (byte*)(_vectors + Batch);
        _buffers = _names + Batch * NameSize;
    }

    /// <summary>True on Linux x64/arm64, where the structures above match the kernel's.</summary>
    public static bool IsSupported => MultiMessage.IsSupported;

    /// <summary>
    /// Waits for at least one datagram on <paramref name="fd"/> and returns how many arrived (0 on a timeout or
    /// interruption). -1 means the call is not available here (use recvfrom); -2 means the socket was closed.
    /// </summary>
    public int Receive(nint fd)
    {
        for (var i = 0; i < Batch; i++)
        {
            _vectors[i].Base = _buffers + (long)i * SlotSize;
            _vectors[i].Length = SlotSize;
            _headers[i].Header = new MsgHdr { Name = _names + i * NameSize, NameLength = NameSize, Iov = _vectors + i, IovLength = 1 };
            _headers[i].Length = 0;
        }
        var n = RecvMmsg((int)fd, _headers, Batch, MsgWaitForOne, null);
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

    /// <summary>Copies the sender of datagram <paramref name="index"/> into <paramref name="address"/> (the socket's native form).</summary>
    public void Sender(int index, SocketAddress address)
    {
        var length = (int)Math.Min(_headers[index].Header.NameLength, (uint)address.Buffer.Length);
        new ReadOnlySpan<byte>(_names + index * NameSize, length).CopyTo(address.Buffer.Span);
        address.Size = length;
    }

    public void Dispose() => NativeMemory.AlignedFree(_memory);

}
