using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Overlay.Host.Control;

/// <summary>
/// The node's local control socket: a Unix stream socket at a path, owner read-write only, that answers one request
/// per connection (<c>status</c> or <c>status --json</c>). The file mode keeps other users from connecting; the
/// peer's credentials (SO_PEERCRED) are checked as well, so a socket whose mode was widened, or a directory that lets
/// others in, still answers only the user the node runs as and root.
/// </summary>
public sealed partial class ControlSocket : IHostedService, IAsyncDisposable
{
    /// <summary>Requests longer than this are refused (the protocol is one short line).</summary>
    internal const int MaxRequest = 256;

    /// <summary>Connections served at once; more are closed at once (a local user could otherwise open thousands).</summary>
    internal const int MaxConcurrent = 8;

    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);
    private readonly string _path;
    private readonly Func<Task<HostStatus>> _status;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _slots = new(MaxConcurrent);
    private Socket? _listener;
    private Task _accepting = Task.CompletedTask;
    private bool _disposed;
    private readonly bool _required;

    /// <summary>Creates the socket's server; nothing listens until <see cref="StartAsync"/>.</summary>
    /// <param name="path">Where the socket is made.</param>
    /// <param name="status">What it answers with.</param>
    /// <param name="logger">Where it logs.</param>
    /// <param name="required">True when the path was asked for: a node already answering there stops this one from
    /// starting. False for the default path: the node runs without a socket, with a warning (two nodes on one machine).</param>
    public ControlSocket(string path, Func<Task<HostStatus>> status, ILogger<ControlSocket> logger, bool required = true)
    {
        _required = required;
        _path = path;
        _status = status;
        _logger = logger;
    }

    /// <summary>Connections refused because the peer was another user.</summary>
    public long Refused => Interlocked.Read(ref _refused);
    private long _refused;

    /// <summary>The default path: /run/overlay/overlay.sock for root (systemd's RuntimeDirectory), else the user's runtime directory.</summary>
    public static string DefaultPath(string? runtimeDirectory) =>
        PeerCredentials.Self == 0 ? "/run/overlay/overlay.sock"
        : Path.Combine(string.IsNullOrEmpty(runtimeDirectory) ? $"/tmp/overlay-{PeerCredentials.Self}" : runtimeDirectory, "overlay.sock");

    /// <summary>Binds the socket (replacing a stale one nobody answers at) and starts answering.</summary>
    /// <exception cref="ControlSocketException">Another node answers at the path, or it cannot be created.</exception>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("the control socket relies on Unix file modes and SO_PEERCRED");
        try
        {
            var directory = Path.GetDirectoryName(Path.GetFullPath(_path))!;
            if (!Directory.Exists(directory)) Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            if (File.Exists(_path))
            {
                if (await AnswersAsync(_path, cancellationToken).ConfigureAwait(false))
                {
                    if (_required) throw new ControlSocketException($"another node answers at {_path}: give this one its own --control-socket");
                    LogTaken(_path);
                    return;
                }
                File.Delete(_path); // left by a node that did not stop cleanly
            }
            var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                listener.Bind(new UnixDomainSocketEndPoint(_path));
                File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                listener.Listen(MaxConcurrent);
            }
            catch
            {
                listener.Dispose();
                throw;
            }
            _listener = listener;
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            throw new ControlSocketException($"cannot create the control socket {_path}: {e.Message}", e);
        }
        _accepting = AcceptAsync(_listener, _stopping.Token);
        LogListening(_path);
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_disposed) return;
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        await _accepting.ConfigureAwait(false);
        if (_listener is not null)
        {
            try { File.Delete(_path); }
            catch (IOException) { }
            _listener = null;
        }
    }

    private async Task AcceptAsync(Socket listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try { client = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            if (!_slots.Wait(0))
            {
                client.Dispose();
                continue;
            }
            _ = ServeAsync(client, cancellationToken);
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken cancellationToken)
    {
        try
        {
            using (client)
            await using (var stream = new NetworkStream(client, ownsSocket: false))
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(RequestTimeout);
                // The request is read first even from a stranger: closing on unread bytes would reset the connection
                // and the refusal would never arrive.
                var request = await ReadLineAsync(stream, timeout.Token).ConfigureAwait(false);
                var uid = PeerCredentials.UserOf(client);
                if (uid != PeerCredentials.Self && uid != 0)
                {
                    Interlocked.Increment(ref _refused);
                    LogRefused(uid);
                    await stream.WriteAsync(Encoding.UTF8.GetBytes($"error: uid {uid} may not ask this node (it answers uid {PeerCredentials.Self} and root)\n"), timeout.Token).ConfigureAwait(false);
                    return;
                }
                var reply = request switch
                {
                    "status" => (await _status().ConfigureAwait(false)).Describe(),
                    "status --json" => JsonSerializer.Serialize(await _status().ConfigureAwait(false), HostJson.Indented.HostStatus) + "\n",
                    _ => "error: unknown request (this node answers 'status' and 'status --json')\n",
                };
                await stream.WriteAsync(Encoding.UTF8.GetBytes(reply), timeout.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // the client went away or took too long: nothing to answer
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>One line of at most <see cref="MaxRequest"/> bytes, without its end; null when longer or cut short.</summary>
    private static async Task<string?> ReadLineAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxRequest];
        var length = 0;
        while (length < buffer.Length)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
            if (read == 0) return null;
            var end = Array.IndexOf(buffer, (byte)'\n', length, read);
            length += read;
            if (end >= 0) return Encoding.UTF8.GetString(buffer, 0, end).TrimEnd('\r');
        }
        return null;
    }

    /// <summary>Asks the node at <paramref name="path"/> and returns its answer.</summary>
    /// <exception cref="ControlSocketException">Nobody answers there, or the node refused this user (<see cref="ControlSocketException.ExitCode"/> says which).</exception>
    public static async Task<string> AskAsync(string path, string request, CancellationToken cancellationToken = default)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AccessDenied)
        {
            throw new ControlSocketException($"{path}: permission denied (the node's control socket is its owner's only)", e, ExitCodes.NotPermitted);
        }
        catch (SocketException e)
        {
            var why = File.Exists(path) ? e.Message : "no such socket";
            throw new ControlSocketException($"no node answers at {path} ({why}); is it running, with this --control-socket?", e, ExitCodes.NotRunning);
        }
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request + "\n"), cancellationToken).ConfigureAwait(false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string reply;
        try { reply = await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false); }
        catch (IOException e) { throw new ControlSocketException($"the node at {path} closed the connection: {e.Message}", e, ExitCodes.NotRunning); }
        if (reply.StartsWith("error: ", StringComparison.Ordinal))
            throw new ControlSocketException(reply[7..].TrimEnd(), null, ExitCodes.NotPermitted);
        if (reply.Length == 0) throw new ControlSocketException($"the node at {path} did not answer", null, ExitCodes.NotRunning);
        return reply;
    }

    private static async Task<bool> AnswersAsync(string path, CancellationToken cancellationToken)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await probe.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        if (_disposed) return;
        _disposed = true;
        _stopping.Dispose();
        _slots.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "control socket {Path} (overlay status)")]
    private partial void LogListening(string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "no control socket: another node answers at {Path}; give this one its own with --control-socket")]
    private partial void LogTaken(string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "control socket: refused a connection from uid {Uid}")]
    private partial void LogRefused(uint uid);
}

/// <summary>The control socket cannot be created, or nobody (or not this user) may be answered there.</summary>
public sealed class ControlSocketException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ControlSocketException() : this("control socket error") { }

    /// <summary>Creates the exception with a message.</summary>
    public ControlSocketException(string message) : this(message, null) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public ControlSocketException(string message, Exception? innerException) : this(message, innerException, ExitCodes.ControlUnavailable) { }

    /// <summary>Creates the exception with a message, cause and the exit status it means.</summary>
    public ControlSocketException(string message, Exception? innerException, int exitCode) : base(message, innerException) => ExitCode = exitCode;

    /// <summary>The host's exit status for it.</summary>
    public int ExitCode { get; }
}
