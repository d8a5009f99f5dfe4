using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Overlay.Stack;

namespace Overlay.AspNetCore;

/// <summary>
/// Kestrel's transport on a <see cref="UserspaceStack"/>: endpoints at the stack's addresses (or "any") are listened on
/// through it, so the app is reachable only inside the overlay.
/// <code>
/// builder.WebHost.UseOverlayStack(node.Network("ovl1")).UseKestrel(k => k.Listen(IPAddress.Any, 8080));
/// </code>
/// </summary>
public sealed class OverlayConnectionListenerFactory(UserspaceStack stack) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    /// <summary>Whether <paramref name="endpoint"/> is on this stack: an IP endpoint at one of its addresses, or any address.</summary>
    public bool CanBind(EndPoint endpoint) =>
        endpoint is IPEndPoint ip && (ip.Address.Equals(IPAddress.Any) || ip.Address.Equals(IPAddress.IPv6Any)
            || ip.Address.Equals(stack.IPv4Address) || ip.Address.Equals(stack.IPv6Address));

    /// <inheritdoc />
    public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (!CanBind(endpoint)) throw new NotSupportedException($"{endpoint} is not an address of the overlay stack {stack.Name}");
        var port = ((IPEndPoint)endpoint).Port;
        var listener = await stack.ListenAsync(port).ConfigureAwait(false);
        return new OverlayConnectionListener(listener, endpoint);
    }
}

/// <summary>Registers Kestrel's transport on the userspace stack.</summary>
public static class OverlayWebHostBuilderExtensions
{
    /// <summary>Kestrel listens through <paramref name="stack"/> for the endpoints at its addresses (see <see cref="OverlayConnectionListenerFactory"/>).</summary>
    public static IWebHostBuilder UseOverlayStack(this IWebHostBuilder builder, UserspaceStack stack)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(stack);
        return builder.ConfigureServices(services => services.AddSingleton<IConnectionListenerFactory>(new OverlayConnectionListenerFactory(stack)));
    }
}

internal sealed class OverlayConnectionListener(OverlayTcpListener listener, EndPoint endpoint) : IConnectionListener
{
    public EndPoint EndPoint { get; } = endpoint;

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var stream = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            return new OverlayConnection(stream);
        }
        catch (ObjectDisposedException)
        {
            return null; // unbound: Kestrel stops accepting
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default) => listener.DisposeAsync();

    public ValueTask DisposeAsync() => listener.DisposeAsync();
}

/// <summary>One accepted connection as Kestrel sees it: the stream behind a pair of pipes.</summary>
internal sealed class OverlayConnection : ConnectionContext, IDuplexPipe
{
    private readonly OverlayTcpStream _stream;

    public OverlayConnection(OverlayTcpStream stream)
    {
        _stream = stream;
        Input = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        Output = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        LocalEndPoint = stream.LocalEndPoint;
        RemoteEndPoint = stream.RemoteEndPoint;
    }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    public override IDuplexPipe Transport { get => this; set => throw new NotSupportedException(); }

    public override string ConnectionId { get; set; } = Guid.NewGuid().ToString("N");

    public override IFeatureCollection Features { get; } = new FeatureCollection();

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public override void Abort(ConnectionAbortedException abortReason) => _stream.Abort();

    public override async ValueTask DisposeAsync()
    {
        await Input.CompleteAsync().ConfigureAwait(false);
        await Output.CompleteAsync().ConfigureAwait(false);
        _stream.CompleteWrites();
        await _stream.DisposeAsync().ConfigureAwait(false);
    }
}
