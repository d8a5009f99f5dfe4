using Overlay.Stack.Tcp;
using System.Net;
using System.Runtime.CompilerServices;

namespace Overlay.Stack;

/// <summary>
/// A TCP connection of a <see cref="UserspaceStack"/> as a duplex <see cref="Stream"/>. Reads return 0 at the peer's
/// FIN; <see cref="CompleteWrites"/> sends ours (half-close) and reading goes on. Writes wait while the send buffer is
/// full, so a slow reader slows the writer instead of making the stack buffer without bound. Disposing closes
/// gracefully (FIN), or resets when unread data would be lost. Timeouts are cancellation tokens.
/// </summary>
public sealed class OverlayTcpStream : Stream
{
    private readonly TcpConnection _connection;
    private readonly object _gate;
    private int _disposed;

    internal OverlayTcpStream(TcpConnection connection)
    {
        _connection = connection;
        _gate = connection.StackGate;
        RemoteEndPoint = connection.RemoteEndPoint;
        LocalEndPoint = connection.LocalEndPoint;
    }

    /// <summary>The peer's address and port.</summary>
    public IPEndPoint RemoteEndPoint { get; }

    /// <summary>This side's address and port.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <inheritdoc />
    public override bool CanRead => true;

    /// <inheritdoc />
    public override bool CanWrite => true;

    /// <inheritdoc />
    public override bool CanSeek => false;

    /// <inheritdoc />
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc />
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    // The defaults are Stream's own; without them a caller holding this type could not write ReadAsync(buffer). RS0027
    // wants optional parameters only on the longest overload, which an override of Stream cannot choose.
#pragma warning disable RS0027
    /// <inheritdoc />
    /// <remarks>A read that has to wait reuses a pooled state machine: reading allocates nothing per call.</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            ValueTask wait;
            int read;
            lock (_gate) read = _connection.Read(buffer.Span, out wait, cancellationToken);
            if (read >= 0) return read;
            await wait.ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    /// <remarks>A write that has to wait for room reuses a pooled state machine: writing allocates nothing per call.</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (buffer.Length > 0)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            ValueTask wait;
            int written;
            lock (_gate) written = _connection.Write(buffer.Span, out wait, cancellationToken);
            if (written >= 0) buffer = buffer[written..];
            else await wait.ConfigureAwait(false);
        }
    }

#pragma warning restore RS0027

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

    /// <summary>Half-close: sends a FIN after what was written; the peer reads to its end, and this side can still read.</summary>
    public void CompleteWrites()
    {
        lock (_gate) _connection.CompleteWrites();
    }

    /// <summary>Ends the connection at once with a reset.</summary>
    public void Abort()
    {
        lock (_gate) _connection.Abort(sendReset: true);
    }

    /// <summary>Segments are sent as they are written (no Nagle delay): flushing has nothing to do.</summary>
    public override void Flush()
    {
    }

    /// <inheritdoc />
    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
            lock (_gate) _connection.Release();
        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override ValueTask DisposeAsync()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}
