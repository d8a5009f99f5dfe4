using System.Net;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Overlay.Host.Map;

/// <summary>
/// The live overlay map (<c>overlay run --map</c>): one self-contained page (<c>/</c>) that draws the node's ring, fed
/// by the node's status as JSON (<c>/status</c>) and as server-sent events (<c>/events</c>: at every link or membership
/// change, and at least once a second). It has no login: it listens on loopback unless told otherwise, and answers only
/// requests that name its own address (a page elsewhere cannot reach it through a rebound DNS name).
/// </summary>
public sealed partial class MapServer : IHostedService, IAsyncDisposable
{
    /// <summary>Browsers served at once.</summary>
    internal const int MaxConnections = 16;

    private static readonly TimeSpan Period = TimeSpan.FromSeconds(1);
    private readonly IPEndPoint _endpoint;
    private readonly NodeMonitor _node;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private WebApplication? _app;

    /// <summary>Creates the map's server; nothing listens until <see cref="StartAsync"/>.</summary>
    public MapServer(IPEndPoint endpoint, NodeMonitor node, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _endpoint = endpoint;
        _node = node;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<MapServer>();
    }

    /// <summary>The address the map is served at (the port the system chose, when asked for port 0).</summary>
    public Uri? Address { get; private set; }

    /// <inheritdoc />
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(_loggerFactory);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(_endpoint);
            k.Limits.MaxConcurrentConnections = MaxConnections;
            k.AddServerHeader = false;
        });
        var app = builder.Build();
        app.Use(async (context, next) =>
        {
            if (!IsOwnHost(context.Request.Host))
            {
                context.Response.StatusCode = StatusCodes.Status421MisdirectedRequest;
                return;
            }
            context.Response.Headers.CacheControl = "no-store";
            await next(context).ConfigureAwait(false);
        });
        var page = ReadPage();
        app.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        app.MapGet("/status", async () => Results.Text(JsonSerializer.Serialize(await _node.GetStatusAsync().ConfigureAwait(false), HostJson.Indented.HostStatus), "application/json"));
        app.MapGet("/events", (HttpContext context) => TypedResults.ServerSentEvents(StreamAsync(context.RequestAborted), eventType: "status"));
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new Control.ControlSocketException($"cannot serve the map at {_endpoint}: {e.Message}", e);
        }
        _app = app;
        var bound = app.Urls.FirstOrDefault() ?? $"http://{_endpoint}";
        Address = new Uri(bound.EndsWith('/') ? bound : bound + "/");
        if (!IPAddress.IsLoopback(_endpoint.Address)) LogExposed(_endpoint);
        LogServing(Address);
    }

    private bool IsOwnHost(HostString host)
    {
        if (!host.HasValue) return false;
        var port = host.Port ?? 80;
        if (Address is { } address && port != address.Port) return false;
        return host.Host is "localhost" || (IPAddress.TryParse(host.Host.Trim('[', ']'), out var ip) && (IPAddress.IsLoopback(ip) || ip.Equals(_endpoint.Address) || _endpoint.Address.Equals(IPAddress.Any) || _endpoint.Address.Equals(IPAddress.IPv6Any)));
    }

    /// <summary>The status now, then again at every change (several changes in a row give one event) or after a second.</summary>
    private async IAsyncEnumerable<string> StreamAsync([EnumeratorCancellation] CancellationToken aborted)
    {
        // The stream ends when the browser goes or the map stops: Kestrel's graceful stop waits for open responses.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(aborted, _stopping.Token);
        var cancellationToken = linked.Token;
        var changed = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
        void OnChanged(object? sender, EventArgs e) => changed.Writer.TryWrite(true);
        _node.Changed += OnChanged;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                yield return JsonSerializer.Serialize(await _node.GetStatusAsync().ConfigureAwait(false), HostJson.Compact.HostStatus);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                wait.CancelAfter(Period);
                try { await changed.Reader.ReadAsync(wait.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { } // a second passed, or the stream ends (the loop looks)
            }
        }
        finally
        {
            _node.Changed -= OnChanged;
        }
    }

    private static string ReadPage()
    {
        using var stream = typeof(MapServer).Assembly.GetManifestResourceStream("map.html") ?? throw new InvalidOperationException("map.html is not embedded");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is { } app)
        {
            _app = null;
            await _stopping.CancelAsync().ConfigureAwait(false);
            await app.StopAsync(cancellationToken).ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _stopping.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "overlay map at {Address}")]
    private partial void LogServing(Uri address);

    [LoggerMessage(Level = LogLevel.Warning, Message = "the map listens on {Endpoint}, not on loopback: anyone who reaches it sees the node's peers and their addresses")]
    private partial void LogExposed(IPEndPoint endpoint);
}
