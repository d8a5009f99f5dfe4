using Overlay.Stack.Tcp;
using System.Net;
using Overlay.Stack.Internal;

namespace Overlay.Stack;

/// <summary>A TCP port a <see cref="UserspaceStack"/> listens on; connections the handshake completed wait here (bounded) to be accepted.</summary>
public sealed class OverlayTcpListener : IAsyncDisposable
{
    private readonly UserspaceStack _stack;
    private readonly Queue<TcpConnection> _ready = new();
    private readonly int _backlog;
    private readonly AsyncSignal _accept;
    private bool _closed;

    internal OverlayTcpListener(UserspaceStack stack, int port, int backlog)
    {
        _stack = stack;
        Port = port;
        _backlog = backlog;
        _accept = new AsyncSignal(stack.Gate);
    }

    /// <summary>The port.</summary>
    public int Port { get; }

    /// <summary>The address and port it listens on (the IPv4 address, else the IPv6 one).</summary>
    public IPEndPoint LocalEndPoint => new(_stack.IPv4Address ?? _stack.IPv6Address ?? IPAddress.Any, Port);

    internal bool IsOpen => !_closed;

    /// <summary>The next connection; waits for one.</summary>
    /// <exception cref="ObjectDisposedException">The listener was closed.</exception>
    public async ValueTask<OverlayTcpStream> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ValueTask wait;
            lock (_stack.Gate)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                while (_ready.TryDequeue(out var connection))
                    if (connection.State != TcpState.Closed) return new OverlayTcpStream(connection);
                wait = _accept.Arm(cancellationToken);
            }
            await wait.ConfigureAwait(false);
        }
    }

    /// <summary>Under the lock: a connection completed its handshake; false when the backlog is full.</summary>
    internal bool Enqueue(TcpConnection connection)
    {
        if (_closed || _ready.Count >= _backlog) return false;
        _ready.Enqueue(connection);
        _accept.Set();
        return true;
    }

    internal void CloseLocked()
    {
        if (_closed) return;
        _closed = true;
        _stack.RemoveListener(this);
        while (_ready.TryDequeue(out var connection)) connection.Abort(sendReset: true);
        _accept.Fail(new ObjectDisposedException(nameof(OverlayTcpListener)));
    }

    /// <summary>Stops listening; connections not yet accepted are reset, accepted ones go on.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_stack.Gate) CloseLocked();
        return ValueTask.CompletedTask;
    }

}
