// Overlay demo: a whole overlay in one process, with no servers and no root.
//   - N nodes (default 8) find each other through an in-process signaling hub
//   - each links to its Symphony neighbours with real links: ICE (host candidates) on this machine, a DTLS handshake
//     that checks both certificates, AES-GCM sealed frames
//   - an in-memory IP host sits behind each node's switch: ARP + ping between every pair, a broadcast reaching each once
//   - the first two nodes also join overlay 'web' with the userspace TCP/IP stack: one serves a web page on it, the
//     other fetches it with HttpClient, all without a TAP or root
// usage: dotnet run --project samples/Overlay.Demo -c Release [-- --nodes N] ; exits non-zero if anything fails.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using Overlay;
using Overlay.Signaling.InProcess;
using Overlay.Topology;
using Overlay.Tap.InMemory;

var count = 8;
for (var i = 0; i + 1 < args.Length; i += 2)
    if (args[i] == "--nodes") count = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
if (count is < 2 or > 64)
{
    Console.Error.WriteLine("--nodes must be 2..64");
    return 2;
}

var total = Stopwatch.StartNew();
var failures = 0;
var hub = new InProcessSignalingHub();   // the nodes of this process meet here
var nodes = new List<OverlayNode>();
var hosts = new List<InMemoryIpHost>();
var ups = new List<LinkEvent>();
var ringFormed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
var up = new Dictionary<string, HashSet<string>>();
var gate = new Lock();

Console.WriteLine($"Starting {count} nodes on overlay 'demo' (in-process signaling, in-memory NICs, real links on this machine)");
try
{
    for (var i = 0; i < count; i++)
    {
        var builder = OverlayNode.Create()
            .UseInProcessSignaling(hub)
            .JoinOverlay("demo", o => o.WithInMemoryDevice().WithAddress($"10.77.0.{i + 1}/24"));
        if (i < 2) builder.JoinOverlay("web", o => o.WithUserspaceStack().WithAddress($"10.78.0.{i + 1}/24"));
        var node = builder.Build();
        node.LinkChanged += (_, e) => OnLink(node, e);
        await node.StartAsync();
        nodes.Add(node);
        hosts.Add(new InMemoryIpHost((InMemoryEthernetDevice)node.GetOverlay("demo").Device, IPAddress.Parse($"10.77.0.{i + 1}")));
    }

    using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
    {
        try { await ringFormed.Task.WaitAsync(wait.Token); }
        catch (OperationCanceledException) { Console.WriteLine("the ring did not form within 60 s"); failures++; }
    }
    Console.WriteLine($"Ring formed in {total.Elapsed.TotalMilliseconds:0} ms: {ups.Count / 2} links; setup median {Median(ups.Select(e => e.Elapsed.TotalMilliseconds)):0} ms, max {ups.Max(e => e.Elapsed.TotalMilliseconds):0} ms");

    await hosts[0].BroadcastProbeAsync(1);
    var deadline = Stopwatch.StartNew();
    while (hosts.Skip(1).Any(h => h.ProbesReceived.Count == 0) && deadline.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(10);
    var once = hosts.Skip(1).Count(h => h.ProbesReceived.Values.Sum() == 1);
    Console.WriteLine($"Broadcast from 10.77.0.1: reached {once} of {count - 1} other hosts exactly once");
    if (once != count - 1) failures++;

    Console.WriteLine("ARP + ping between every pair through the overlay:");
    var rtts = new List<double>();
    foreach (var from in hosts)
        foreach (var to in hosts)
        {
            if (from == to) continue;
            try { rtts.Add((await from.PingAsync(to.Address, TimeSpan.FromSeconds(3))).TotalMilliseconds); }
            catch (TimeoutException) { Console.WriteLine($"   ping {from.Address} -> {to.Address} timed out"); failures++; }
        }
    Console.WriteLine($"   {rtts.Count} of {count * (count - 1)} answered; RTT median {Median(rtts):0.000} ms, max {rtts.DefaultIfEmpty().Max():0.000} ms");

    // Each end knows why it wants a link (the other may hold it only for the peer's sake): the link's roles are both ends'.
    var statuses = new Dictionary<string, OverlayStatus>();
    foreach (var node in nodes) statuses[node.NodeId] = (await node.GetStatusAsync()).Overlays[0];
    Console.WriteLine("Links (node -> peer: why, path, keepalive RTT, frames sent/received):");
    foreach (var node in nodes)
    {
        foreach (var link in statuses[node.NodeId].Links.Where(l => string.CompareOrdinal(node.NodeId, l.PeerNodeId) < 0))
        {
            var peerEnd = statuses.TryGetValue(link.PeerNodeId, out var peer) ? peer.Links.FirstOrDefault(l => l.PeerNodeId == node.NodeId) : null;
            var roles = link.Roles | (peerEnd?.Roles ?? LinkRoles.None);
            // The first keepalive's answer may still be on its way for a link that just came up.
            var rtt = link.RoundTrip is { } r ? $"{r.TotalMilliseconds:0.00} ms" : "not yet measured";
            Console.WriteLine($"   {node.NodeId[..8]} -> {link.PeerNodeId[..8]} {link.State,-3} {roles,-24} {link.Path?.LocalType} {link.Path?.Local} -> {link.Path?.Remote}" +
                $"  rtt {rtt}  frames {link.Statistics?.FramesSent}/{link.Statistics?.FramesReceived}");
        }
    }

    Console.WriteLine("A web page over the userspace TCP/IP stack (overlay 'web': no TAP, no root):");
    failures += await ServeAndFetchAsync(nodes[0], nodes[1]);
}
finally
{
    foreach (var host in hosts) await host.DisposeAsync();
    foreach (var node in nodes) await node.DisposeAsync();
}

Console.WriteLine(failures == 0 ? $"OK in {total.Elapsed.TotalSeconds:0.0} s" : $"{failures} failure(s)");
return failures == 0 ? 0 : 1;

// Node 0 serves one page with a minimal HTTP/1.1 responder on its stack; node 1 fetches it with HttpClient.
static async Task<int> ServeAndFetchAsync(OverlayNode server, OverlayNode client)
{
    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
    var web = server.Network("web");
    await using var listener = await web.ListenAsync(80);
    var serving = Task.Run(async () =>
    {
        await using var connection = await listener.AcceptAsync(timeout.Token);
        var request = new byte[4096];
        var length = 0;
        while (!System.Text.Encoding.ASCII.GetString(request, 0, length).Contains("\r\n\r\n", StringComparison.Ordinal))
            length += await connection.ReadAsync(request.AsMemory(length), timeout.Token);
        var body = System.Text.Encoding.UTF8.GetBytes($"<h1>Hello from {server.NodeId[..8]}</h1><p>served at {web.IPv4Address} by the userspace TCP/IP stack</p>");
        await connection.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
            $"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"), timeout.Token);
        await connection.WriteAsync(body, timeout.Token);
        connection.CompleteWrites();
    });
    try
    {
        // The link on 'web' may still be forming: the first tries can find no one to answer ARP.
        using var http = new HttpClient(client.Network("web").CreateHttpHandler());
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var fetched = Stopwatch.StartNew();
                var page = await http.GetStringAsync(new Uri($"http://{web.IPv4Address}/"), timeout.Token);
                Console.WriteLine($"   {client.NodeId[..8]} fetched http://{web.IPv4Address}/ from {server.NodeId[..8]} in {fetched.Elapsed.TotalMilliseconds:0} ms:");
                Console.WriteLine($"   {page}");
                break;
            }
            catch (HttpRequestException) when (attempt < 10)
            {
                await Task.Delay(500, timeout.Token);
            }
        }
        await serving;
        return 0;
    }
    catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
    {
        Console.WriteLine($"   fetching the page failed: {e.Message}");
        return 1;
    }
}

void OnLink(OverlayNode node, LinkEvent e)
{
    if (e.OverlayId != "demo") return;
    lock (gate)
    {
        var mine = up.TryGetValue(node.NodeId, out var set) ? set : up[node.NodeId] = [];
        if (e.Change == LinkChange.Up)
        {
            mine.Add(e.PeerNodeId);
            ups.Add(e);
            if (string.CompareOrdinal(node.NodeId, e.PeerNodeId) < 0)
                Console.WriteLine($"   link {node.NodeId[..8]} <-> {e.PeerNodeId[..8]} up in {e.Elapsed.TotalMilliseconds:0} ms over {e.Path}");
        }
        else if (e.Change is LinkChange.Down or LinkChange.Closed or LinkChange.Failed)
        {
            mine.Remove(e.PeerNodeId);
        }
        // Formed: all nodes started, and each node's ring successor (by node ID) is linked at both ends.
        if (up.Count == count && !ringFormed.Task.IsCompleted)
        {
            var ring = up.Keys.Order(StringComparer.Ordinal).ToArray();
            var formed = true;
            for (var i = 0; i < ring.Length; i++)
            {
                var next = ring[(i + 1) % ring.Length];
                if (!up[ring[i]].Contains(next) || !up[next].Contains(ring[i])) formed = false;
            }
            if (formed) ringFormed.TrySetResult();
        }
    }
}

static double Median(IEnumerable<double> values)
{
    var sorted = values.Order().ToArray();
    return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
}
