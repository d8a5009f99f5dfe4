// Overlay host: runs one real node from a JSON configuration (EdgeVPN key names): XMPP signaling, STUN/TURN, a Linux
// TAP per overlay, on the .NET Generic Host (systemd readiness and journald when run as a service). The node is hosted as
// any application hosts one (AddOverlayNode, package OverlayVpn.Extensions.Hosting); the host adds its CLI, control
// socket, map, status file and OpenTelemetry export.
//   overlay run <config.json> [--map [ADDRESS:PORT]] [--control-socket PATH] [--log-level L] [--status-interval S] [--status-file PATH]
//               [--metrics console|otlp[=URL]|prometheus[=ADDRESS:PORT]]... [--traces console|otlp[=URL]]... [--metrics-interval S]
//   overlay status [--json] [--control-socket PATH]
//   overlay --version | --help
// Exit codes: see ExitCodes.cs (and the README).
using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Overlay;
using Overlay.Host;
using Overlay.Host.Control;
using Overlay.Host.Map;
using Overlay.Host.Telemetry;
using Overlay.Signaling;
using Overlay.Signaling.Xmpp;
using Overlay.Tap;

var defaultSocket = ControlSocket.DefaultPath(Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"));
var socketOption = new Option<string>("--control-socket")
{
    Description = $"The node's control socket (owner-only) [default: {defaultSocket}]",
    DefaultValueFactory = _ => defaultSocket,
};

var config = new Argument<FileInfo>("config") { Description = "The node's JSON configuration (EdgeVPN key names)" };
// An unknown option would otherwise be taken for the file's name, and the error would blame the next word.
config.Validators.Add(r =>
{
    foreach (var token in r.Tokens)
        if (token.Value.StartsWith('-')) r.AddError($"unknown option '{token.Value}' (see 'overlay run --help')");
});
var map = new Option<string?>("--map")
{
    Description = "Serve the live overlay map at ADDRESS:PORT [default when given alone: 127.0.0.1:8080]; off unless given",
    Arity = ArgumentArity.ZeroOrOne,
    HelpName = "ADDRESS:PORT",
};
var logLevel = new Option<LogLevel>("--log-level") { Description = "The least level logged", DefaultValueFactory = _ => LogLevel.Information };
var statusInterval = new Option<double>("--status-interval") { Description = "Log the status every S seconds (0: never)", HelpName = "S" };
var statusFile = new Option<string?>("--status-file") { Description = "Write the status as JSON to this file once a second (owner-only)", HelpName = "PATH" };
var metrics = new Option<string[]>("--metrics")
{
    Description = "Export the node's metrics with OpenTelemetry: console, otlp[=URL] (OTLP/HTTP to a collector, default http://localhost:4318), " +
        "prometheus[=ADDRESS:PORT] (scrape endpoint /metrics, default 127.0.0.1:9464); repeat for more than one; off unless given",
    HelpName = "EXPORTER",
    Arity = ArgumentArity.OneOrMore,
};
var traces = new Option<string[]>("--traces")
{
    Description = "Export link-setup spans: console or otlp[=URL]; off unless given",
    HelpName = "EXPORTER",
    Arity = ArgumentArity.OneOrMore,
};
var metricsInterval = new Option<double>("--metrics-interval")
{
    Description = "How often console and OTLP export the metrics, in seconds (Prometheus reads them when it scrapes)",
    HelpName = "S",
    DefaultValueFactory = _ => 10,
};
var run = new Command("run", "Run a node until Ctrl+C or SIGTERM") { config, map, socketOption, logLevel, statusInterval, statusFile, metrics, traces, metricsInterval };
run.SetAction((result, ct) => RunAsync(result));

var json = new Option<bool>("--json") { Description = "The status as JSON, for scripts" };
var status = new Command("status", "Show a running node's members, links, paths, RTTs and counters (through its control socket)") { json, socketOption };
status.SetAction((result, ct) => StatusAsync(result, ct));

var root = new RootCommand("Overlay host: one node of a private encrypted Ethernet overlay. Exit codes: 0 ok, 1 unexpected error, 2 command line or configuration, " +
    "3 virtual NIC, 4 signaling unreachable, 5 signaling refused the credentials, 6 control socket, map or metrics address taken, 7 no node at the socket (status), " +
    "8 not permitted (status), 130 interrupted while starting.") { run, status };

// The host's earlier usage, 'Overlay.Host <config.json> [options]', still runs: a first argument that names a file means run.
if (args.Length > 0 && !args[0].StartsWith('-') && args[0] is not ("run" or "status") && File.Exists(args[0])) args = ["run", .. args];
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors) Console.Error.WriteLine(error.Message);
    Console.Error.WriteLine("see 'overlay --help'");
    return ExitCodes.Configuration;
}
// The Generic Host handles SIGINT/SIGTERM (and systemd's stop) itself.
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });

async Task<int> RunAsync(ParseResult result)
{
    var configPath = result.GetValue(config)!.FullName;
    IPEndPoint? mapAt = null;
    if (result.GetResult(map) is not null)
    {
        var text = result.GetValue(map) ?? "127.0.0.1:8080";
        if (!IPEndPoint.TryParse(text, out mapAt) || !text.Contains(':', StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"--map: '{text}' is not ADDRESS:PORT (for example 127.0.0.1:8080)");
            return ExitCodes.Configuration;
        }
    }
    var interval = result.GetValue(statusInterval);
    if (interval < 0 || double.IsNaN(interval))
    {
        Console.Error.WriteLine("--status-interval must be 0 or more seconds");
        return ExitCodes.Configuration;
    }
    TelemetryExport export;
    try
    {
        export = TelemetryExport.Parse(result.GetValue(metrics) ?? [], result.GetValue(traces) ?? [], result.GetValue(metricsInterval));
    }
    catch (FormatException e)
    {
        Console.Error.WriteLine(e.Message);
        return ExitCodes.Configuration;
    }
    var options = new RunOptions(configPath, result.GetValue(logLevel), TimeSpan.FromSeconds(interval), result.GetValue(statusFile), result.GetValue(socketOption)!, mapAt);

    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
    builder.Logging.ClearProviders()
        .SetMinimumLevel(options.LogLevel)
        .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
        // A failed start is reported once, as one line naming the cause and its exit code, not again with a stack trace.
        .AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
    builder.Services.AddSystemd(); // after the console: under systemd its formatter (journald's priorities, no timestamps) wins
    builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));

    OverlayNodeOptions nodeOptions;
    try
    {
        nodeOptions = OverlayConfiguration.Load(configPath);
    }
    catch (OverlayConfigurationException e)
    {
        Console.Error.WriteLine($"{configPath}: {e.Message}");
        return ExitCodes.Configuration;
    }
    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
    {
        Console.Error.WriteLine($"cannot read the configuration: {e.Message}");
        return ExitCodes.Configuration;
    }

    builder.Services.AddSingleton(options);
    // OpenTelemetry, when asked for: its providers start with the host and take the node's meter by name.
    export.AddTo(builder.Services, NodeMonitor.Version);
    // The node, its hosted service (started before the services below, stopped after them) and its meter through the
    // host's IMeterFactory: as any application hosts one.
    builder.Services.AddOverlayNode(nodeOptions);
    builder.Services.AddSingleton<NodeMonitor>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<NodeMonitor>());
    // The default path is shared by every node of the machine: a second node there runs without a socket, with a warning.
    var socketRequired = result.GetResult(socketOption) is { Implicit: false };
    builder.Services.AddHostedService(sp => new ControlSocket(options.ControlSocket, sp.GetRequiredService<NodeMonitor>().GetStatusAsync,
        sp.GetRequiredService<ILogger<ControlSocket>>(), socketRequired));
    if (mapAt is not null)
        builder.Services.AddHostedService(sp => new MapServer(mapAt, sp.GetRequiredService<NodeMonitor>(), sp.GetRequiredService<ILoggerFactory>()));

    using var host = builder.Build();
    var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
    var log = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Overlay.Host");
    NodeMonitor service;
    try
    {
        service = host.Services.GetRequiredService<NodeMonitor>(); // builds the node, loading its key: a configuration error until now
    }
    catch (OverlayConfigurationException e)
    {
        Console.Error.WriteLine($"{configPath}: {e.Message}");
        return ExitCodes.Configuration;
    }
    catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
    {
        Console.Error.WriteLine($"cannot load the node's key: {e.Message}");
        return ExitCodes.Configuration;
    }
    try
    {
        await host.StartAsync();
    }
    catch (Exception e) when (Classify(e) is { } failure)
    {
        Console.Error.WriteLine(failure.Message);
        await StopQuietlyAsync(host);
        return failure.Code;
    }
    if (lifetime.ApplicationStopping.IsCancellationRequested)
    {
        await StopQuietlyAsync(host);
        return ExitCodes.Interrupted;
    }
    log.LogInformation("node {NodeId} running; 'overlay status --control-socket {Socket}' shows its links; Ctrl+C stops it", service.Node.NodeId, options.ControlSocket);
    await host.WaitForShutdownAsync();
    log.LogInformation("stopped: links torn down, NICs closed");
    return ExitCodes.Ok;
}

static (string Message, int Code)? Classify(Exception e) => e switch
{
    OperationCanceledException => ("interrupted while starting", ExitCodes.Interrupted),
    TapDeviceException => ($"cannot open the virtual NIC: {e.Message}", ExitCodes.Device),
    XmppAuthenticationException or XmppCertificateException => ($"signaling refused this node: {e.Message}", ExitCodes.SignalingAuthentication),
    SignalingException => ($"cannot reach signaling: {e.Message}", ExitCodes.SignalingUnreachable),
    ControlSocketException c => (c.Message, c.ExitCode),
    // The Prometheus endpoint's listener could not be started (its address taken or not this machine's).
    InvalidOperationException { InnerException: HttpListenerException h } => ($"cannot serve the metrics: {h.Message}", ExitCodes.ControlUnavailable),
    HttpListenerException h => ($"cannot serve the metrics: {h.Message}", ExitCodes.ControlUnavailable),
    PlatformNotSupportedException => (e.Message, ExitCodes.Failure),
    _ => null,
};

static async Task StopQuietlyAsync(IHost host)
{
    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
    try { await host.StopAsync(timeout.Token); }
    catch (Exception e) when (e is OperationCanceledException or AggregateException or InvalidOperationException) { }
}

async Task<int> StatusAsync(ParseResult result, CancellationToken ct)
{
    try
    {
        Console.Write(await ControlSocket.AskAsync(result.GetValue(socketOption)!, result.GetValue(json) ? "status --json" : "status", ct));
        return ExitCodes.Ok;
    }
    catch (ControlSocketException e)
    {
        Console.Error.WriteLine(e.Message);
        return e.ExitCode;
    }
}
