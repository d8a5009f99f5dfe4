using System.Net;
using System.Net.Sockets;
using Overlay.Stack.Internal;
using Overlay.Stack.Ip;

namespace Overlay.Stack;

/// <summary>The sender and length of a datagram received by <see cref="OverlayUdpSocket.ReceiveFromAsync"/>.</summary>
/// <param name="Length">Bytes copied into the caller's buffer (a longer datagram is cut to it).</param>
/// <param name="RemoteEndPoint">Who sent it.</param>
public readonly record struct OverlayUdpReceiveResult(int Length, IPEndPoint RemoteEndPoint);

/// <summary>A UDP port of a <see cref="UserspaceStack"/>; received datagrams wait in a bounded queue (more are dropped and counted).</summary>
public sealed class OverlayUdpSocket : IAsyncDisposable
{
    private readonly UserspaceStack _stack;
    private readonly byte[][] _slots;
    private readonly int[] _lengths;
    private readonly UInt128[] _sources;
    private readonly ushort[] _sourcePorts;
    private readonly AsyncSignal _receive;
    private int _head;
    private int _count;
    private bool _closed;

    internal OverlayUdpSocket(UserspaceStack stack, int port, int capacity, int mtu)
    {
        _stack = stack;
        Port = port;
        _slots = new byte[capacity][];
        _lengths = new int[capacity];
        _sources = new UInt128[capacity];
        _sourcePorts = new ushort[capacity];
        for (var i = 0; i < capacity; i++) _slots[i] = new byte[mtu];
        _receive = new AsyncSignal(stack.Gate);
    }

    /// <summary>The local port.</summary>
    public int Port { get; }

    /// <summary>Sends one datagram (resolving the destination's MAC address first when it is not known).</summary>
    /// <exception cref="SocketException">The destination did not answer ARP / Neighbor Solicitation.</exception>
    /// <exception cref="ArgumentException">The datagram does not fit the MTU (the stack does not fragment).</exception>
    public async ValueTask SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remote, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remote);
        var address = Addresses.From(remote.Address);
        var max = _stack.Mtu - (Addresses.IsV4(address) ? 28 : 48);
        if (datagram.Length > max) throw new ArgumentException($"{datagram.Length} bytes do not fit the overlay MTU ({max} for UDP)", nameof(datagram));
        if (_stack.LocalFor(address) is null) throw new SocketException((int)SocketError.AddressFamilyNotSupported);
        while (true)
        {
            lock (_stack.Gate)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                if (_stack.SendDatagram(address, remote.Port, Port, datagram.Span)) return;
            }
            await _stack.ResolveAsync(address, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits for a datagram and copies it into <paramref name="buffer"/>.</summary>
    public async ValueTask<OverlayUdpReceiveResult> ReceiveFromAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ValueTask wait;
            lock (_stack.Gate)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                if (_count > 0)
                {
                    var length = Math.Min(_lengths[_head], buffer.Length);
                    _slots[_head].AsSpan(0, length).CopyTo(buffer.Span);
                    var from = new IPEndPoint(Addresses.ToIPAddress(_sources[_head]), _sourcePorts[_head]);
                    _head = (_head + 1) % _slots.Length;
                    _count--;
                    return new OverlayUdpReceiveResult(length, from);
                }
                wait = _receive.Arm(cancellationToken);
            }
            await wait.ConfigureAwait(false);
        }
    }

    /// <summary>Under the lock: a datagram for this port; false when the queue is full.</summary>
    internal bool Deliver(UInt128 source, ushort sourcePort, ReadOnlySpan<byte> payload)
    {
        if (_closed || _count == _slots.Length || payload.Length > _slots[0].Length) return false;
        var index = (_head + _count) % _slots.Length;
        payload.CopyTo(_slots[index]);
        _lengths[index] = payload.Length;
        _sources[index] = source;
        _sourcePorts[index] = sourcePort;
        _count++;
        _receive.Set();
        return true;
    }

    internal void CloseLocked()
    {
        if (_closed) return;
        _closed = true;
        _stack.RemoveUdp(this);
        _receive.Fail(new ObjectDisposedException(nameof(OverlayUdpSocket)));
    }

    /// <summary>Closes the port.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_stack.Gate) CloseLocked();
        return ValueTask.CompletedTask;
    }
}
