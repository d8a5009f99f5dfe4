using System.Net;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Overlay.Host.Telemetry;

/// <summary>
/// Where <c>overlay run</c> exports the node's metrics (meter <see cref="OverlayNode.MeterName"/>) and link-setup spans
/// (activity source <see cref="OverlayNode.ActivitySourceName"/>) with OpenTelemetry; nothing is exported unless asked.
/// <c>--metrics</c> takes <c>console</c>, <c>otlp[=URL]</c> (OTLP over HTTP/protobuf to a collector's base URL, by
/// default <c>http://localhost:4318</c>) and <c>prometheus[=ADDRESS:PORT]</c> (a scrape endpoint at <c>/metrics</c>, by
/// default on loopback, <c>127.0.0.1:9464</c>); <c>--traces</c> takes <c>console</c> and <c>otlp[=URL]</c>.
/// </summary>
/// <param name="Console">Metrics to the console.</param>
/// <param name="Otlp">Metrics to this OTLP/HTTP collector, or null.</param>
/// <param name="Prometheus">Prometheus' scrape endpoint, or null.</param>
/// <param name="ConsoleTraces">Spans to the console.</param>
/// <param name="OtlpTraces">Spans to this OTLP/HTTP collector, or null.</param>
/// <param name="Interval">How often console and OTLP export metrics.</param>
public sealed record TelemetryExport(bool Console, Uri? Otlp, IPEndPoint? Prometheus, bool ConsoleTraces, Uri? OtlpTraces, TimeSpan Interval)
{
    /// <summary>Where an OTLP collector listens for HTTP/protobuf unless told otherwise.</summary>
    public static readonly Uri DefaultOtlp = new("http://localhost:4318");

    /// <summary>Where the Prometheus endpoint listens unless told otherwise: loopback only, the exporter's usual port.</summary>
    public static readonly IPEndPoint DefaultPrometheus = new(IPAddress.Loopback, 9464);

    /// <summary>True when anything is exported.</summary>
    public bool Any => Console || Otlp is not null || Prometheus is not null || ConsoleTraces || OtlpTraces is not null;

    /// <summary>Reads the options' values; an error names the option and the value.</summary>
    public static TelemetryExport Parse(IEnumerable<string> metrics, IEnumerable<string> traces, double intervalSeconds)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(traces);
        if (!(intervalSeconds > 0) || intervalSeconds > 3600) throw new FormatException("--metrics-interval must be more than 0 and at most 3600 seconds");
        var export = new TelemetryExport(false, null, null, false, null, TimeSpan.FromSeconds(intervalSeconds));
        foreach (var value in metrics)
        {
            var (kind, argument) = Split(value);
            export = kind switch
            {
                "console" when argument is null => export with { Console = true },
                "otlp" => export with { Otlp = Collector("--metrics", argument) },
                "prometheus" => export with { Prometheus = Endpoint(argument) },
                _ => throw new FormatException($"--metrics: '{value}' is none of console, otlp[=URL], prometheus[=ADDRESS:PORT]"),
            };
        }
        foreach (var value in traces)
        {
            var (kind, argument) = Split(value);
            export = kind switch
            {
                "console" when argument is null => export with { ConsoleTraces = true },
                "otlp" => export with { OtlpTraces = Collector("--traces", argument) },
                _ => throw new FormatException($"--traces: '{value}' is neither console nor otlp[=URL]"),
            };
        }
        return export;
    }

    /// <summary>Registers OpenTelemetry's providers for what is asked (they start and stop with the host).</summary>
    public void AddTo(IServiceCollection services, string version)
    {
        if (!Any) return;
        var telemetry = services.AddOpenTelemetry().ConfigureResource(r => r.AddService("overlay", serviceVersion: version));
        if (Console || Otlp is not null || Prometheus is not null)
        {
            telemetry.WithMetrics(m =>
            {
                m.AddMeter(OverlayNode.MeterName);
                var every = (int)Math.Max(1, Interval.TotalMilliseconds);
                if (Console)
                    m.AddConsoleExporter((_, reader) => reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = every);
                if (Otlp is { } otlp)
                    m.AddOtlpExporter((exporter, reader) =>
                    {
                        exporter.Protocol = OtlpExportProtocol.HttpProtobuf;
                        exporter.Endpoint = Signal(otlp, "v1/metrics");
                        reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = every;
                    });
                if (Prometheus is { } at)
                    m.AddPrometheusHttpListener(o =>
                    {
                        o.Host = at.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{at.Address}]" : at.Address.ToString();
                        o.Port = at.Port;
                    });
            });
        }
        if (ConsoleTraces || OtlpTraces is not null)
        {
            telemetry.WithTracing(t =>
            {
                t.AddSource(OverlayNode.ActivitySourceName);
                if (ConsoleTraces) t.AddConsoleExporter();
                if (OtlpTraces is { } otlp)
                    t.AddOtlpExporter(exporter =>
                    {
                        exporter.Protocol = OtlpExportProtocol.HttpProtobuf;
                        exporter.Endpoint = Signal(otlp, "v1/traces");
                    });
            });
        }
    }

    private static (string Kind, string? Argument) Split(string value)
    {
        var equals = value.IndexOf('=', StringComparison.Ordinal);
        return equals < 0 ? (value, null) : (value[..equals], value[(equals + 1)..]);
    }

    private static Uri Collector(string option, string? argument)
    {
        if (argument is null) return DefaultOtlp;
        if (Uri.TryCreate(argument, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Query.Length == 0) return uri;
        throw new FormatException($"{option}: 'otlp={argument}' is not a collector's http:// or https:// URL (for example http://localhost:4318)");
    }

    private static IPEndPoint Endpoint(string? argument)
    {
        if (argument is null) return DefaultPrometheus;
        if (IPEndPoint.TryParse(argument, out var at) && argument.Contains(':', StringComparison.Ordinal) && at.Port != 0) return at;
        throw new FormatException($"--metrics: 'prometheus={argument}' is not ADDRESS:PORT (for example 127.0.0.1:9464)");
    }

    /// <summary>The collector's URL for one signal: OTLP/HTTP posts each to its own path under the base (v1/metrics, v1/traces).</summary>
    private static Uri Signal(Uri collector, string path) => new(new Uri(collector.AbsoluteUri.TrimEnd('/') + "/"), path);
}
