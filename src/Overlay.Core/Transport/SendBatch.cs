using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Overlay.Transport.MultiMessage;

namespace Overlay.Transport;

/// <summary>
/// Collects the datagrams one thread sends during a burst and hands them to the kernel with one <c>sendmmsg(2)</c> per
/// socket instead of one <c>sendto</c> each. A loop that moves a burst of frames (a TAP read loop, a socket receive
/// loop that forwards) opens a scope with <see cref="Begin"/>; <see cref="UdpMux.Send"/> on that thread then queues
/// (copying the datagram) and the scope's end sends. Outside a scope sending is immediate, as before.
/// </summary>
public static unsafe class SendBatch
{
    internal const int Capacity = 32;
    [ThreadStatic] private static Queue? t_queue;

    /// <summary>True when the calling thread is inside a batch scope.</summary>
    internal static bool IsActive => t_queue is { Depth: > 0 };

    /// <summary>Starts (or nests) a batch on the calling thread; dispose the scope to send what it holds.</summary>
    public static Scope Begin()
    {
        if (!MultiMessage.IsSupported) return default;
        var queue = t_queue ??= new Queue();
        queue.Depth++;
        return new Scope(queue);
    }

    /// <summary>Starts (or nests) a batch on the calling thread; pair with <see cref="Exit"/> on the same thread.</summary>
    public static void Enter() => Begin();

    /// <summary>Ends what <see cref="Enter"/> started; the outermost end sends.</summary>
    public static void Exit()
    {
        if (t_queue is { Depth: > 0 } queue) new Scope(queue).Dispose();
    }

    /// <summary>Queues one datagram for <paramref name="mux"/>; false when it must be sent at once instead.</summary>
    internal static bool TryQueue(UdpMux mux, ReadOnlySpan<byte> datagram, SocketAddress destination)
    {
        var queue = t_queue;
        if (queue is not { Depth: > 0 } || datagram.Length > Queue.SlotSize || destination.Size > Queue.NameSize) return false;
        if (queue.Count == Capacity || (queue.Mux is not null && queue.Mux != mux)) queue.Flush();
        queue.Add(mux, datagram, destination);
        return true;
    }

    /// <summary>Ends a batch scope: the outermost one sends what was queued.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly Queue? _queue;

        internal Scope(Queue queue) => _queue = queue;

        /// <summary>Sends the queued datagrams (outermost scope only).</summary>
        public void Dispose()
        {
            if (_queue is null) return;
            if (--_queue.Depth == 0) _queue.Flush();
        }
    }

    internal sealed class Queue
    {
        public const int SlotSize = 2048;
        public const int NameSize = 128;
        private readonly byte* _memory;
        private readonly MMsgHdr* _headers;
        private readonly IoVec* _vectors;
        private readonly byte* _names;
        private readonly byte* _buffers;

        public Queue()
        {
            _memory = (byte*)NativeMemory.AlignedAlloc((nuint)(Capacity * (sizeof(MMsgHdr) + sizeof(IoVec) + NameSize + SlotSize)), 64);
            _headers = (MMsgHdr*)_memory;
            _vectors = (IoVec*)(_memory + Capacity * sizeof(MMsgHdr));
            _names = (byte*)(_vectors + Capacity);
            _buffers = _names + Capacity * NameSize;
        }

        // One queue per thread for the thread's lifetime: the native block is never freed (a thread-static finalizer
        // would race the thread's exit); 100 KiB per thread that ever batched.
        public int Depth;
        public int Count;
        public UdpMux? Mux;

        public void Add(UdpMux mux, ReadOnlySpan<byte> datagram, SocketAddress destination)
        {
            var i = Count++;
            Mux = mux;
            var slot = _buffers + (long)i * SlotSize;
            datagram.CopyTo(new Span<byte>(slot, SlotSize));
            var name = _names + i * NameSize;
            destination.Buffer.Span[..destination.Size].CopyTo(new Span<byte>(name, NameSize));
            _vectors[i] = new IoVec { Base = slot, Length = (nuint)datagram.Length };
            _headers[i] = new MMsgHdr { Header = new MsgHdr { Name = name, NameLength = (uint)destination.Size, Iov = _vectors + i, IovLength = 1 } };
        }

        public void Flush()
        {
            var count = Count;
            var mux = Mux;
            Count = 0;
            Mux = null;
            if (count == 0 || mux is null) return;
            mux.SendQueued(count, this);
        }

        /// <summary>sendmmsg until every datagram went or was refused (refused ones are skipped); returns how many went.</summary>
        public int Send(nint fd, int count)
        {
            int next = 0, sent = 0;
            while (next < count)
            {
                var n = SendMmsg((int)fd, _headers + next, (uint)(count - next), 0);
                if (n > 0)
                {
                    next += n;
                    sent += n;
                }
                else if (n < 0 && Marshal.GetLastPInvokeError() == 4)
                {
                    continue; // EINTR
                }
                else
                {
                    next++; // the kernel refused this one (a pending ICMP error, a full buffer): drop it, go on
                }
            }
            return sent;
        }
    }
}
