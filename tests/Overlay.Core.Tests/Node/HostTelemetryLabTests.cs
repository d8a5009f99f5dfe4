using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using static Overlay.Core.Tests.Node.HostNatLabTests;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// <c>overlay run --metrics ... --traces ...</c> on a real run: two <c>Overlay.Host</c> processes on prosody with real
/// TAPs and a real link; the first exports with OpenTelemetry to a Prometheus endpoint (scraped with curl over HTTP), to
/// the console, and over OTLP/HTTP to a collector (a small python server in its namespace that keeps what it is sent).
/// Each shows the documented instruments with the values of the run: one link up over a host pair, its setup time,
/// keepalive round trips, the ping's frames, the flooded ARP request, signaling connected; and the link's setup span.
/// </summary>
[NonParallelizable]
public partial class HostTelemetryLabTests
{
    /// <summary>An OTLP/HTTP collector, as far as a test needs one: each POST's body appended to a file named by its path.</summary>
    private const string Collector = """
        import http.server, os, sys
        out = sys.argv[1]
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
                    body = b''
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
                with open(os.path.join(out, self.path.strip('/').replace('/', '_')), 'ab') as f:
                    f.write(body)
                self.send_response(200)
                self.send_header('Content-Type', 'application/x-protobuf')
                self.send_header('Content-Length', '0')
                self.end_headers()
            def log_message(self, *args):
                pass
        http.server.HTTPServer(('127.0.0.1', 4318), Handler).serve_forever()
        """;

    [Test]
    public async Task A_host_exports_its_metrics_to_prometheus_the_console_and_otlp_and_its_link_setup_spans()
    {
        Prerequisites.RequireLab("ping", "curl", "python3");
        await using var lab = await NatLab.StartAsync([NatKind.Public, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-otel-");
        var hosts = new List<HostProcess>();
        var ns = lab.Hosts[0].Namespace;
        var received = Directory.CreateDirectory(Path.Combine(work.FullName, "otlp"));
        var script = Path.Combine(work.FullName, "collector.py");
        await File.WriteAllTextAsync(script, Collector);
        using var collector = ns.Start("python3", $"{script} {received.FullName}");
        var timings = new { KeepaliveInterval = 0.5 };
        try
        {
            hosts.Add(HostProcess.Start(lab, 0, work.FullName, timings, extra:
                "--metrics prometheus --metrics console --metrics otlp=http://127.0.0.1:4318 --metrics-interval 1 --traces console --traces otlp=http://127.0.0.1:4318"));
            hosts.Add(HostProcess.Start(lab, 1, work.FullName, timings));
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(60), "the link between the two hosts");
            PingAll(lab, hosts);
            var me = hosts[0];

            // Prometheus: the endpoint on the namespace's loopback, scraped as Prometheus would (curl, plain HTTP GET).
            var scrape = "";
            var running = Stopwatch.StartNew();
            await WaitAsync(hosts, () =>
            {
                scrape = ns.Exec("curl", "-sf http://127.0.0.1:9464/metrics", TimeSpan.FromSeconds(15));
                return Sample(scrape, "overlay_link_rtt_seconds_count", ("overlay_id", "lab")) >= 1
                    && Sample(scrape, "overlay_frames_total", ("overlay_id", "lab"), ("network_io_direction", "transmit")) >= 2;
            }, TimeSpan.FromSeconds(30), "round trips and the ping's frames in the scrape");
            TestContext.Out.WriteLine(scrape);
            Assert.Multiple(() =>
            {
                // Two public hosts: a direct pair, of their host candidates or, when a check came before the candidate was
                // signalled, a peer-reflexive one (counted as srflx); never the relay.
                Assert.That(Samples(scrape, "overlay_links_up", ("overlay_id", "lab")).Sum(), Is.EqualTo(1), "one link up");
                Assert.That(Samples(scrape, "overlay_links_up", ("overlay_id", "lab"), ("overlay_path_type", "relay")), Is.Empty, "over a direct pair");
                Assert.That(Samples(scrape, "overlay_link_setup_duration_seconds_count", ("overlay_id", "lab")).Sum(), Is.EqualTo(1), "its setup, timed once");
                Assert.That(Samples(scrape, "overlay_link_setup_duration_seconds_sum", ("overlay_id", "lab")).Sum(),
                    Is.GreaterThan(0).And.LessThan(running.Elapsed.TotalSeconds + 60), "in seconds");
                Assert.That(Samples(scrape, "overlay_ice_outcomes_total", ("overlay_id", "lab"), ("overlay_ice_outcome", "succeeded")).Sum(), Is.EqualTo(1));
                Assert.That(Sample(scrape, "overlay_link_rtt_seconds_sum", ("overlay_id", "lab")), Is.GreaterThan(0));
                // Buckets in seconds (the instruments' advice), not the exporters' defaults for milliseconds.
                Assert.That(Sample(scrape, "overlay_link_rtt_seconds_bucket", ("overlay_id", "lab"), ("le", "0.001")), Is.Not.Null, "a 1 ms bucket for round trips");
                Assert.That(Sample(scrape, "overlay_link_setup_duration_seconds_bucket", ("overlay_id", "lab"), ("le", "0.5")), Is.Not.Null, "a 0.5 s bucket for setups");
                Assert.That(Sample(scrape, "overlay_frames_total", ("overlay_id", "lab"), ("network_io_direction", "receive")), Is.GreaterThanOrEqualTo(2), "the ping's answers");
                Assert.That(Sample(scrape, "overlay_bytes_total", ("overlay_id", "lab"), ("network_io_direction", "transmit")), Is.GreaterThanOrEqualTo(2 * 42));
                Assert.That(Sample(scrape, "overlay_switch_floods_total", ("overlay_id", "lab")), Is.GreaterThanOrEqualTo(1), "the ARP request");
                // Learned or not depends on how the peer's address first arrived (its own link, or a flood); the series is there.
                Assert.That(Sample(scrape, "overlay_switch_learned", ("overlay_id", "lab")), Is.Not.Null);
                Assert.That(Sample(scrape, "overlay_frames_dropped_total", ("overlay_id", "lab"), ("overlay_drop_reason", "address_not_owned")), Is.Zero);
                Assert.That(Sample(scrape, "overlay_signaling_state", ("overlay_signaling_state", "connected")), Is.EqualTo(1));
                Assert.That(Sample(scrape, "overlay_signaling_messages_total", ("overlay_signaling_outcome", "accepted")), Is.GreaterThanOrEqualTo(1));
                Assert.That(Sample(scrape, "overlay_signaling_reconnects_total"), Is.Zero);
                Assert.That(scrape.Split('\n').Where(l => l.StartsWith("overlay_", StringComparison.Ordinal)),
                    Is.All.Contain($"otel_scope_overlay_node_id=\"{me.NodeId}\""), "every series names the node");
            });

            // The console: each instrument with its tags and value, every second.
            await me.WaitForLineAsync("Metric Name: overlay.links.up", "Unit: {link}", TimeSpan.FromSeconds(10));
            await WaitAsync(hosts, () => LastExport(me.Output(), "overlay.links.up") is { } block
                && Regex.IsMatch(block, @"overlay\.path\.type: (host|srflx)") && Regex.IsMatch(block, @"\nValue: 1\b"),
                TimeSpan.FromSeconds(10), "the console's overlay.links.up to show the link");
            // An export can fall between the histogram's new point being made and its first value being added (OpenTelemetry
            // makes the point, then records into it): it shows the point at "Count: 0", and the next export shows the value.
            await WaitAsync(hosts, () => LastExport(me.Output(), "overlay.link.setup.duration") is { } setup && setup.Contains("Count: 1", StringComparison.Ordinal),
                TimeSpan.FromSeconds(10), "the console's overlay.link.setup.duration to count the setup");
            Assert.That(me.CountLines("Metric Name: overlay.frames,", "Unit: {frame}"), Is.GreaterThan(0));
            // And the link's setup span, from the edge request to the link up.
            Assert.That(me.CountLines("Activity.DisplayName:", "overlay.link.setup"), Is.GreaterThanOrEqualTo(1), "a setup span on the console");
            Assert.That(me.Output(), Does.Contain("dtls.authenticated"));

            // OTLP: the collector got metrics and spans, each at its own path (protobuf: the names are there as UTF-8).
            // Metrics arrive every second, each export with what was recorded by then (the first may precede the first
            // round trip); spans go in batches every 5 s (a setup abandoned in a collision may come before the one that
            // succeeded). Wait for an export of each that has it all.
            string[] instruments = ["overlay.links.up", "overlay.link.setup.duration", "overlay.link.rtt", "overlay.frames", "overlay.node.id", me.NodeId];
            await WaitAsync(hosts, () => instruments.All(i => Received(received, "v1_metrics").Contains(i, StringComparison.Ordinal))
                && Received(received, "v1_traces").Contains("dtls.authenticated", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "OTLP exports");
            Assert.That(Received(received, "v1_traces"), Does.Contain("overlay.link.setup").And.Contain("ice.selected"));

            // The exporters stop with the host: SIGTERM is still a clean stop.
            await me.StopAsync();
            Assert.That(me.ExitCode, Is.Zero, me.Tail());
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            if (!collector.HasExited) collector.Kill();
            work.Delete(recursive: true);
        }
    }

    /// <summary>The value of the first series <paramref name="name"/> with all of <paramref name="labels"/> in a Prometheus scrape, or null.</summary>
    private static double? Sample(string scrape, string name, params (string Label, string Value)[] labels) =>
        Samples(scrape, name, labels) is [var first, ..] ? first : null;

    /// <summary>The values of every series <paramref name="name"/> with all of <paramref name="labels"/> in a Prometheus scrape.</summary>
    private static double[] Samples(string scrape, string name, params (string Label, string Value)[] labels) =>
        [.. scrape.Split('\n').Select(line => Series().Match(line))
            .Where(m => m.Success && m.Groups["name"].Value == name
                && labels.All(l => m.Groups["labels"].Value.Contains($"{l.Label}=\"{l.Value}\"", StringComparison.Ordinal)))
            .Select(m => double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture))];

    [GeneratedRegex(@"^(?<name>[a-z_]+)\{(?<labels>[^}]*)\} (?<value>[-+0-9.eE]+|NaN)")]
    private static partial Regex Series();

    /// <summary>The console exporter's last block for <paramref name="instrument"/> (up to the next metric), or null.</summary>
    private static string? LastExport(string output, string instrument)
    {
        var start = output.LastIndexOf($"Metric Name: {instrument},", StringComparison.Ordinal);
        if (start < 0) return null;
        var end = output.IndexOf("Metric Name: ", start + 1, StringComparison.Ordinal);
        return end < 0 ? output[start..] : output[start..end];
    }

    /// <summary>What the collector received at one path so far, as text (protobuf keeps strings as UTF-8).</summary>
    private static string Received(DirectoryInfo directory, string name)
    {
        var path = Path.Combine(directory.FullName, name);
        if (!File.Exists(path)) return "";
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}
