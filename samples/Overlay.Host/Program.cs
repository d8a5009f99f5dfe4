// Overlay host: runs one real node from a JSON configuration (EdgeVPN key names): XMPP signaling, STUN/TURN,
// a Linux TAP per overlay. Logs to the console; prints its status when "status" (or an empty line) is typed
// on stdin, every --status-interval seconds, or into --status-file; shuts down cleanly on Ctrl+C or SIGTERM.
// usage: Overlay.Host <config.json> [--log-level Debug|Information|Warning] [--status-interval S] [--status-file PATH]
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Overlay;
using Overlay.Signaling;
using Overlay.Tap;

string? configPath = null, statusFile = null;
var level = LogLevel.Information;
var statusInterval = TimeSpan.Zero;
for (var i = 0; i < args.Length; i++)
{
    string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    try
    {
        switch (args[i])
        {
            case "--log-level": level = Enum.Parse<LogLevel>(Value(), ignoreCase: true); break;
            case "--status-interval": statusInterval = TimeSpan.FromSeconds(double.Parse(Value(), CultureInfo.InvariantCulture)); break;
            case "--status-file": statusFile = Value(); break;
            case "-h" or "--help": return Usage(0);
            default:
                if (args[i].StartsWith('-') || configPath is not null) return Usage(2, $"unexpected argument '{args[i]}'");
                configPath = args[i];
                break;
        }
    }
    catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
    {
        return Usage(2, e.Message);
    }
}
if (configPath is null) return Usage(2, "the configuration file is required");

using var loggerFactory = LoggerFactory.Create(b => b
    .SetMinimumLevel(level)
    .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; }));
var log = loggerFactory.CreateLogger("Overlay.Host");

OverlayNode node;
try
{
    node = OverlayNode.Create(OverlayConfiguration.Load(configPath), loggerFactory);
}
catch (OverlayConfigurationException e)
{
    Console.Error.WriteLine($"{configPath}: {e.Message}");
    return 2;
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
{
    Console.Error.WriteLine($"cannot load the node: {e.Message}");
    return 2;
}

using var stop = new CancellationTokenSource();
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
await using (node)
{
    try
    {
        await node.StartAsync(stop.Token);
    }
    catch (TapDeviceException e)
    {
        Console.Error.WriteLine($"cannot open the virtual NIC: {e.Message}");
        return 3;
    }
    catch (SignalingException e)
    {
        Console.Error.WriteLine($"cannot reach signaling: {e.Message}");
        return 4;
    }
    catch (OperationCanceledException)
    {
        return 130;
    }
    Console.WriteLine($"node {node.NodeId} running; type 'status' for its links, Ctrl+C to stop");

    var statusLoop = statusInterval > TimeSpan.Zero || statusFile is not null ? ReportPeriodicallyAsync() : Task.CompletedTask;
    var stdin = Task.Run(ReadCommandsAsync);
    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
        log.LogInformation("stopping: tearing down links and NICs");
    }
    await statusLoop;
}
return 0;

async Task ReportPeriodicallyAsync()
{
    var every = statusInterval > TimeSpan.Zero ? statusInterval : TimeSpan.FromSeconds(1);
    using var timer = new PeriodicTimer(every);
    try
    {
        while (await timer.WaitForNextTickAsync(stop.Token))
        {
            var status = await node.GetStatusAsync();
            if (statusInterval > TimeSpan.Zero) Console.Write(Describe(status));
            if (statusFile is not null)
            {
                await Overlay.Host.StatusFile.WriteAsync(statusFile, JsonSerializer.Serialize(status, StatusJson));
            }
        }
    }
    catch (OperationCanceledException)
    {
        // stopping
    }
}

async Task ReadCommandsAsync()
{
    while (!stop.IsCancellationRequested && await Console.In.ReadLineAsync() is { } line)
    {
        if (line.Trim() is "" or "s" or "status") Console.Write(Describe(await node.GetStatusAsync()));
        else if (line.Trim() is "q" or "quit") stop.Cancel();
        else Console.WriteLine("commands: status, quit");
    }
}

static string Describe(OverlayNodeStatus status)
{
    var text = new StringBuilder();
    text.AppendLine(CultureInfo.InvariantCulture, $"node {status.NodeId} signaling {status.Signaling}");
    foreach (var overlay in status.Overlays)
    {
        text.AppendLine(CultureInfo.InvariantCulture, $"  overlay {overlay.OverlayId} on {overlay.Device} ({overlay.Mac}): {overlay.Members} members, {overlay.Links.Count(l => l.State == LinkChange.Up)} links up, " +
            $"switch in {overlay.Switch.LocalIn}/{overlay.Switch.LinkIn} delivered {overlay.Switch.Delivered} forwarded {overlay.Switch.Forwarded} dropped {overlay.Switch.Dropped} not learned {overlay.Switch.NotLearned}, signals refused {overlay.RefusedSignals}");
        foreach (var link in overlay.Links)
            text.AppendLine(CultureInfo.InvariantCulture, $"    {link.PeerNodeId} {link.State} {link.Roles} {link.Path} rtt {link.RoundTrip?.TotalMilliseconds:0.00} ms path MTU {link.Statistics?.PathMtu} " +
                $"sent {link.Statistics?.FramesSent} ({link.Statistics?.BytesSent} B) received {link.Statistics?.FramesReceived} ({link.Statistics?.BytesReceived} B)");
    }
    return text.ToString();
}

static int Usage(int code, string? problem = null)
{
    if (problem is not null) Console.Error.WriteLine(problem);
    Console.Error.WriteLine("usage: Overlay.Host <config.json> [--log-level Debug|Information|Warning] [--status-interval S] [--status-file PATH]");
    return code;
}

partial class Program
{
    private static readonly JsonSerializerOptions StatusJson = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(), new EndPointConverter() },
    };

    /// <summary>Endpoints as "address:port" (IPAddress itself does not serialize).</summary>
    private sealed class EndPointConverter : JsonConverter<IPEndPoint>
    {
        public override IPEndPoint Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            IPEndPoint.Parse(reader.GetString() ?? throw new JsonException("an endpoint must be a string"));

        public override void Write(Utf8JsonWriter writer, IPEndPoint value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
    }
}
