using System.Diagnostics;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Overlay.TestSupport.Lab;

namespace Overlay.TestSupport.Browser;

/// <summary>
/// Debian's Chromium, headless, driven through the DevTools protocol over its WebSocket: open a page, evaluate script
/// in it, take a screenshot. Started inside a network namespace when given one (so that it reaches what listens on that
/// namespace's loopback); the DevTools socket is then opened from inside the namespace too.
/// </summary>
public sealed partial class HeadlessChromium : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ClientWebSocket _socket;
    private readonly DirectoryInfo _profile;
    private readonly StringBuilder _output;
    private int _nextId;
    private string? _session;

    private HeadlessChromium(Process process, ClientWebSocket socket, DirectoryInfo profile, StringBuilder output)
    {
        _process = process;
        _socket = socket;
        _profile = profile;
        _output = output;
    }

    /// <summary>Starts Chromium (skips, or fails under CI, when it is not installed) with a page of 1200x1000 CSS pixels.</summary>
    public static async Task<HeadlessChromium> StartAsync(NetNamespace? ns = null, CancellationToken ct = default)
    {
        var chromium = Prerequisites.RequireCommand("chromium", "chromium");
        var profile = Directory.CreateTempSubdirectory("overlay-chromium-");
        // --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        var arguments = $"--headless --no-sandbox --disable-gpu --no-first-run --no-default-browser-check --disable-extensions " +
            $"--remote-debugging-address=127.0.0.1 --remote-debugging-port=0 --user-data-dir={profile.FullName} --window-size=1200,1000 about:blank";
        var start = ns is null ? new ProcessStartInfo(chromium, arguments) : new ProcessStartInfo("ip", $"netns exec {ns.Name} {chromium} {arguments}");
        start.RedirectStandardError = true;
        start.RedirectStandardOutput = true;
        start.UseShellExecute = false;
        var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start chromium");
        var output = new StringBuilder();
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (DevToolsLine().Match(e.Data) is { Success: true } m) listening.TrySetResult(new Uri(m.Groups[1].Value));
        };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var socket = new ClientWebSocket();
        try
        {
            var uri = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            using var handler = new SocketsHttpHandler
            {
                // The DevTools port listens on the namespace's loopback: the socket must be made in there.
                ConnectCallback = async (context, token) =>
                {
                    var s = ns is null ? new Socket(SocketType.Stream, ProtocolType.Tcp) : ns.Run(() => new Socket(SocketType.Stream, ProtocolType.Tcp));
                    try { await s.ConnectAsync(context.DnsEndPoint, token).ConfigureAwait(false); }
                    catch { s.Dispose(); throw; }
                    return new NetworkStream(s, ownsSocket: true);
                },
            };
            await socket.ConnectAsync(uri, new HttpMessageInvoker(handler), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or WebSocketException or HttpRequestException)
        {
            string log;
            lock (output) log = output.ToString();
            socket.Dispose();
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            process.Dispose();
            profile.Delete(recursive: true);
            throw new InvalidOperationException($"chromium did not open its DevTools socket: {e.Message}\n{log}", e);
        }
        return new HeadlessChromium(process, socket, profile, output);
    }

    /// <summary>Chromium's own output so far (for a failing test's message).</summary>
    public string Output { get { lock (_output) return _output.ToString(); } }

    /// <summary>Opens <paramref name="url"/> in a new page and waits for it to load.</summary>
    public async Task OpenAsync(Uri url, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        var target = await SendAsync("Target.createTarget", new JsonObject { ["url"] = "about:blank" }, null, ct).ConfigureAwait(false);
        var attached = await SendAsync("Target.attachToTarget", new JsonObject { ["targetId"] = target["targetId"]!.GetValue<string>(), ["flatten"] = true }, null, ct).ConfigureAwait(false);
        _session = attached["sessionId"]!.GetValue<string>();
        await SendAsync("Page.enable", [], _session, ct).ConfigureAwait(false);
        await SendAsync("Emulation.setDeviceMetricsOverride", new JsonObject { ["width"] = 1200, ["height"] = 1000, ["deviceScaleFactor"] = 1, ["mobile"] = false }, _session, ct).ConfigureAwait(false);
        await SendAsync("Page.navigate", new JsonObject { ["url"] = url.ToString() }, _session, ct).ConfigureAwait(false);
        await WaitForAsync("document.readyState === 'complete'", TimeSpan.FromSeconds(20), ct).ConfigureAwait(false);
    }

    /// <summary>Evaluates <paramref name="expression"/> in the page and returns its value as JSON.</summary>
    public async Task<JsonNode?> EvaluateAsync(string expression, CancellationToken ct = default)
    {
        var result = await SendAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true }, Session, ct).ConfigureAwait(false);
        if (result["exceptionDetails"] is { } error) throw new InvalidOperationException($"{expression}: {error.ToJsonString()}");
        return result["result"]?["value"];
    }

    /// <summary>Evaluates <paramref name="condition"/> until it is true; the page keeps running (its events arrive) meanwhile.</summary>
    public async Task WaitForAsync(string condition, TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (await EvaluateAsync($"!!({condition})", ct).ConfigureAwait(false) is JsonValue v && v.GetValue<bool>()) return;
            if (deadline.Elapsed > timeout) throw new TimeoutException($"the page did not show {condition} within {timeout.TotalSeconds} s");
            // The page's state lives in another process: it is polled, as a person would look again.
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
    }

    /// <summary>A PNG of the page as it is drawn now, written to <paramref name="path"/>.</summary>
    public async Task ScreenshotAsync(string path, CancellationToken ct = default)
    {
        var shot = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png", ["captureBeyondViewport"] = true }, Session, ct).ConfigureAwait(false);
        await File.WriteAllBytesAsync(path, Convert.FromBase64String(shot["data"]!.GetValue<string>()), ct).ConfigureAwait(false);
    }

    private string Session => _session ?? throw new InvalidOperationException("open a page first");

    private async Task<JsonNode> SendAsync(string method, JsonObject parameters, string? session, CancellationToken ct)
    {
        var id = ++_nextId;
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters };
        if (session is not null) message["sessionId"] = session;
        await _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, endOfMessage: true, ct).ConfigureAwait(false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        var buffer = new byte[64 * 1024];
        while (true)
        {
            using var received = new MemoryStream();
            WebSocketReceiveResult part;
            do
            {
                part = await _socket.ReceiveAsync(buffer, timeout.Token).ConfigureAwait(false);
                if (part.MessageType == WebSocketMessageType.Close) throw new InvalidOperationException($"chromium closed the DevTools socket:\n{Output}");
                received.Write(buffer, 0, part.Count);
            }
            while (!part.EndOfMessage);
            var reply = JsonNode.Parse(received.ToArray())!;
            if (reply["id"]?.GetValue<int>() != id) continue; // an event, or an answer nobody waits for any more
            if (reply["error"] is { } error) throw new InvalidOperationException($"{method}: {error.ToJsonString()}");
            return reply["result"] ?? new JsonObject();
        }
    }

    /// <summary>Closes the browser and removes its profile.</summary>
    public async ValueTask DisposeAsync()
    {
        try { await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None).ConfigureAwait(false); }
        catch (Exception e) when (e is WebSocketException or InvalidOperationException) { }
        _socket.Dispose();
        try { _process.Kill(entireProcessTree: true); await _process.WaitForExitAsync().ConfigureAwait(false); }
        catch (InvalidOperationException) { }
        _process.Dispose();
        try { _profile.Delete(recursive: true); }
        catch (IOException) { } // chromium's last writes may race the delete
    }

    [GeneratedRegex(@"DevTools listening on (ws://\S+)")]
    private static partial Regex DevToolsLine();
}
