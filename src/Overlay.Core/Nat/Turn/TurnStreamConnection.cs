using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Overlay.Tap.Linux;
using Overlay.Transport;

namespace Overlay.Nat.Turn;

/// <summary>Takes the frames a <see cref="TurnStreamConnection"/> cuts from its stream.</summary>
internal interface IStreamFrameHandler
{
    /// <summary>One STUN message or ChannelData message (padding removed), on the event loop's thread.</summary>
    void OnStreamFrame(ReadOnlySpan<byte> frame, DataPathBatch? batch);
}

/// <summary>
/// TURN over TCP or TLS (RFC 8656 §3.1): one connection to the server carrying STUN messages and ChannelData messages
/// back to back, each framed by its own header (STUN: 20 bytes plus the length field; ChannelData: 4 plus its length,
/// padded to a multiple of 4 on streams, §12.5). Bytes read from the stream go through a <see cref="Pipe"/> to the
/// node's <see cref="EventLoop"/> (woken by an eventfd), which cuts and delivers frames with its batch as it does for
/// UDP datagrams, so a link's frames are handled on one thread whichever way they came. Sends from any thread are
/// copied into a second pipe that a writer task drains into the stream; what the stream has not taken is bounded
/// (<see cref="MaxQueued"/>), past it datagrams are dropped and counted as UDP would lose them.
/// </summary>
internal sealed class TurnStreamConnection : IReadableSource, IAsyncDisposable
{
    /// <summary>Bytes waiting for the stream beyond which sends are dropped (head-of-line blocking stays bounded).</summary>
    public const int MaxQueued = 2 << 20;

    private const int StunHeader = 20;
    private const int MaxFrame = ChannelData.HeaderSize + ushort.MaxValue + 3;

    private readonly Socket _socket;
    private readonly TurnServer _server;
    private readonly Pipe _in = new(new PipeOptions(pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 512 << 10, useSynchronizationContext: false));
    private readonly Pipe _out = new(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));
    private readonly Lock _writeGate = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly byte[] _scratch = new byte[MaxFrame];
    private Stream? _stream;
    private IStreamFrameHandler? _handler;
    private EventLoop? _loop, _ownLoop;
    private long _registration = -1;
    private int _wake = -1;
    private long _queued, _dropped, _framesIn, _framesOut;
    private volatile bool _connected, _closed;
    private Task _reading = Task.CompletedTask, _writing = Task.CompletedTask;

    /// <summary>Creates the socket now, in the calling thread's network namespace; <see cref="ConnectAsync"/> connects it later.</summary>
    public TurnStreamConnection(TurnServer server)
    {
        _server = server;
        _socket = new Socket(server.EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    }

    /// <summary>Connected (and, for TLS, the handshake done) and not closed since.</summary>
    public bool IsOpen => _connected && !_closed;

    /// <summary>Datagrams dropped: queue full, connection not open, or a stream that broke framing.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Frames received and sent (diagnostics, tests).</summary>
    public long FramesIn => Interlocked.Read(ref _framesIn);

    public long FramesOut => Interlocked.Read(ref _framesOut);

    /// <summary>
    /// Connects (TLS: authenticates the server by <see cref="TurnServer.ServerName"/> or its address, against
    /// <see cref="TurnServer.TrustedRoots"/> or the system's) and starts delivering frames to <paramref name="handler"/>
    /// on <paramref name="loop"/> (null: a loop of its own). False when the server cannot be reached or is not trusted.
    /// </summary>
    public async Task<bool> ConnectAsync(IStreamFrameHandler handler, EventLoop? loop, TimeSpan timeout, CancellationToken ct)
    {
        _handler = handler;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct, _closing.Token);
        limit.CancelAfter(timeout);
        try
        {
            await _socket.ConnectAsync(_server.EndPoint, limit.Token).ConfigureAwait(false);
            Stream stream = new NetworkStream(_socket, ownsSocket: false);
            if (_server.Transport == TurnTransport.Tls)
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false, ValidateServer);
                stream = tls;
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = _server.ServerName ?? _server.EndPoint.Address.ToString(),
                }, limit.Token).ConfigureAwait(false);
            }
            _stream = stream;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or AuthenticationException or ObjectDisposedException)
        {
            return false;
        }
        _wake = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (_wake < 0) return false;
        if (loop is null) loop = _ownLoop = EventLoop.Start($"turn-stream {_server.EndPoint}");
        _loop = loop;
        _registration = loop.Register(_wake, this);
        _connected = true;
        _reading = ReadLoopAsync();
        _writing = WriteLoopAsync();
        return true;
    }

    private bool ValidateServer(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0) return false;
        if (_server.TrustedRoots is not { } roots) return errors == SslPolicyErrors.None;
        return Signaling.Xmpp.ServerCertificateValidator.ChainsTo(certificate, chain, roots, out _);
    }

    /// <summary>
    /// Queues one STUN or ChannelData message (ChannelData padded to 4 bytes) for the stream; never blocks. False (and
    /// counted) when the connection is not open or more than <see cref="MaxQueued"/> bytes wait already.
    /// </summary>
    public bool Send(ReadOnlySpan<byte> message)
    {
        if (!IsOpen || message.IsEmpty)
        {
            Interlocked.Increment(ref _dropped);
            return false;
        }
        var length = message[0] >= 0x40 ? (message.Length + 3) & ~3 : message.Length;
        lock (_writeGate)
        {
            if (_closed || Interlocked.Read(ref _queued) + length > MaxQueued)
            {
                Interlocked.Increment(ref _dropped);
                return false;
            }
            var span = _out.Writer.GetSpan(length);
            message.CopyTo(span);
            span[message.Length..length].Clear();
            _out.Writer.Advance(length);
            Interlocked.Add(ref _queued, length);
            // The pipe never pauses its writer (the bound is ours), so the flush completes here.
            var flush = _out.Writer.FlushAsync();
            if (!flush.IsCompleted) _ = flush.AsTask();
        }
        Interlocked.Increment(ref _framesOut);
        return true;
    }

    private async Task WriteLoopAsync()
    {
        var reader = _out.Reader;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(_closing.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var length = buffer.Length; // read before AdvanceTo hands the segments back
                foreach (var segment in buffer) await _stream!.WriteAsync(segment, _closing.Token).ConfigureAwait(false);
                await _stream!.FlushAsync(_closing.Token).ConfigureAwait(false);
                reader.AdvanceTo(buffer.End);
                Interlocked.Add(ref _queued, -length);
                if (result.IsCompleted) return;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            _closed = true;
        }
    }

    private async Task ReadLoopAsync()
    {
        var writer = _in.Writer;
        try
        {
            while (true)
            {
                var memory = writer.GetMemory(16 << 10);
                var n = await _stream!.ReadAsync(memory, _closing.Token).ConfigureAwait(false);
                if (n == 0) break;
                writer.Advance(n);
                var flush = await writer.FlushAsync(_closing.Token).ConfigureAwait(false);
                Wake();
                if (flush.IsCompleted) break;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // closed by the server, the network or us
        }
        _closed = true;
        await writer.CompleteAsync().ConfigureAwait(false);
        Wake();
    }

    private unsafe void Wake()
    {
        ulong one = 1;
        if (_wake >= 0) LibC.Write(_wake, (byte*)&one, sizeof(ulong));
    }

    /// <summary>On the loop's thread: every whole frame read so far goes to the handler with the loop's batch.</summary>
    void IReadableSource.OnReadable(DataPathBatch batch)
    {
        DrainWake();
        var reader = _in.Reader;
        if (!reader.TryRead(out var result)) return;
        var buffer = result.Buffer;
        while (TryFrameLength(buffer, out var length, out var framed))
        {
            if (length < 0)
            {
                // Neither STUN nor ChannelData: the stream lost its framing and cannot be trusted further.
                Interlocked.Increment(ref _dropped);
                _closed = true;
                _closing.Cancel();
                buffer = buffer.Slice(buffer.End);
                break;
            }
            var frame = buffer.Slice(0, length);
            ReadOnlySpan<byte> span;
            if (frame.IsSingleSegment)
            {
                span = frame.FirstSpan;
            }
            else
            {
                frame.CopyTo(_scratch);
                span = _scratch.AsSpan(0, length);
            }
            Interlocked.Increment(ref _framesIn);
            _handler?.OnStreamFrame(span, batch);
            buffer = buffer.Slice(framed);
        }
        reader.AdvanceTo(buffer.Start, buffer.End);
    }

    private unsafe void DrainWake()
    {
        ulong count;
        LibC.Read(_wake, (byte*)&count, sizeof(ulong));
    }

    /// <summary>The next frame's length and the bytes it takes on the stream; false while incomplete; length -1 when unframeable.</summary>
    private static bool TryFrameLength(ReadOnlySequence<byte> buffer, out int length, out int framed)
    {
        length = framed = 0;
        if (buffer.Length < ChannelData.HeaderSize) return false;
        Span<byte> head = stackalloc byte[ChannelData.HeaderSize];
        buffer.Slice(0, ChannelData.HeaderSize).CopyTo(head);
        var size = BinaryPrimitives.ReadUInt16BigEndian(head[2..]);
        if (head[0] < 0x40)
        {
            length = framed = StunHeader + size;
        }
        else if (head[0] < 0x80)
        {
            length = ChannelData.HeaderSize + size;
            framed = (length + 3) & ~3;
        }
        else
        {
            length = -1;
            return true;
        }
        return buffer.Length >= framed;
    }

    public async ValueTask DisposeAsync()
    {
        if (_closing.IsCancellationRequested) return;
        lock (_writeGate)
        {
            _closed = true;
            _out.Writer.Complete();
        }
        try
        {
            await _writing.WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false); // the last requests (a deallocation) leave first
        }
        catch (TimeoutException)
        {
            // the stream does not take them: give up
        }
        await _closing.CancelAsync().ConfigureAwait(false);
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        _stream?.Dispose();
        _socket.Dispose();
        try
        {
            await _reading.ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // the pipe was already completed
        }
        _loop?.Unregister(_registration);
        _ownLoop?.Dispose();
        if (_wake >= 0) LibC.Close(_wake);
        _wake = -1;
        _closing.Dispose();
    }
}
