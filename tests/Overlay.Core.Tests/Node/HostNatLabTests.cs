using System.Diagnostics;
using System.Text.Json;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// The product end to end: four <c>Overlay.Host</c> processes, each in its own network namespace with a real TAP —
/// two behind different cone NATs, one behind a symmetric NAT, one public — meet through prosody, traverse the NATs
/// with coturn's STUN/TURN, and the kernel's own ping works between every pair of overlay addresses. Then one node is
/// killed and the others re-form the ring and ping again.
/// </summary>
[NonParallelizable]
public partial class HostNatLabTests
{
    private const string OverlayId = "lab";

    [Test]
    public async Task Four_hosts_behind_cone_symmetric_and_no_nat_ping_each_other_and_heal_after_a_kill()
    {
        Prerequisites.RequireLab("ping");
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Cone, NatKind.Symmetric, NatKind.Public], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-e2e-");
        var hosts = new List<HostProcess>();
        try
        {
            for (var i = 0; i < lab.Hosts.Count; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName));
            var started = Stopwatch.StartNew();
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(60), "the ring of four");
            TestContext.Out.WriteLine($"ring of four formed {started.ElapsedMilliseconds} ms after the hosts were started");
            foreach (var host in hosts)
                foreach (var link in host.UpLinks())
                    TestContext.Out.WriteLine($"  {lab.Hosts[host.Index].Kind} {host.Address} -> {hosts.Single(h => h.NodeId == link.Peer).Address}: {link.Path}");

            PingAll(lab, hosts);
            // Behind the symmetric NAT only a relay reaches the cone hosts (their routers filter the new mappings); the two
            // cone hosts reach each other directly through their server-reflexive addresses.
            var symmetricToCone = hosts[2].UpLinks().Where(l => l.Peer == hosts[0].NodeId || l.Peer == hosts[1].NodeId).ToArray();
            Assert.That(symmetricToCone, Is.Not.Empty, "the symmetric host is linked to a cone host (it has two ring neighbours among three)");
            Assert.That(symmetricToCone.Select(l => l.Relayed), Has.All.True, "symmetric <-> cone goes through the TURN relay");
            // The first pair that works carries a link at once (it may be the relay) and the direct pair wins when it works.
            await WaitAsync(hosts, () => hosts[0].UpLinks().Where(l => l.Peer == hosts[1].NodeId).All(l => !l.Relayed), TimeSpan.FromSeconds(30),
                "cone <-> cone to be direct");

            var victim = hosts[1];
            var killed = Stopwatch.StartNew();
            victim.Kill();
            hosts.Remove(victim);
            await WaitAsync(hosts, () => RingFormed(hosts) && hosts.All(h => h.UpLinks().All(l => l.Peer != victim.NodeId)), TimeSpan.FromSeconds(60),
                "the ring of three without the killed node");
            var reformed = killed.ElapsedMilliseconds;
            PingAll(lab, hosts);
            TestContext.Out.WriteLine($"after killing {victim.Address}: ring re-formed in {reformed} ms, every pair pinging again {killed.ElapsedMilliseconds} ms after the kill");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    [TestCase(NatKind.Cone)]
    [TestCase(NatKind.Symmetric)]
    public async Task A_link_whose_nat_mapping_changed_restarts_ice_and_recovers_with_the_same_identity(NatKind kind)
    {
        Prerequisites.RequireLab("ping", "conntrack");
        await using var lab = await NatLab.StartAsync([kind, kind], xmpp: true);
        var work = Directory.CreateTempSubdirectory("overlay-e2e-");
        var hosts = new List<HostProcess>();
        var timings = new { KeepaliveInterval = 0.5, DeadPeerTimeout = 3, RestartInterval = 2 };
        try
        {
            for (var i = 0; i < 2; i++) hosts.Add(HostProcess.Start(lab, i, work.FullName, timings));
            await WaitAsync(hosts, () => RingFormed(hosts), TimeSpan.FromSeconds(60), "the link between two cone hosts");
            var before = hosts[0].Links().Single();
            TestContext.Out.WriteLine($"link {before.LinkId} up over {before.Path}");
            PingAll(lab, hosts);

            // B's router reboots, in effect: its mappings are gone and new ones use other ports. Both peers keep running.
            var upLine = $"link {before.LinkId} to ";
            var upsBefore = hosts.Select(h => h.CountLines(upLine, " up over ")).ToArray();
            // The side that never heard the link fall silent may only follow the restarted side onto the new pair.
            string MovedLine(HostProcess h) => $"link to {hosts[1 - h.Index].NodeId} now goes over ";
            var movesBefore = hosts.Select(h => h.CountLines(MovedLine(h), " now goes over ")).ToArray();
            var broken = Stopwatch.StartNew();
            lab.Hosts[1].RemapUdp();
            // The side that hears nothing first declares the link down and, if it set the link up, restarts ICE; the
            // status files are written once a second, so a short outage shows in the log rather than in a status.
            await WaitAsync(hosts, () => hosts.Any(h => h.Links().Any(l => l.State == "Down") || h.Tail().Contains("restarting ICE", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(30), "the silent link to be declared down");
            var down = broken.ElapsedMilliseconds;
            await WaitAsync(hosts, () => hosts.All(h => h.CountLines(upLine, " up over ") > upsBefore[h.Index]
                    || h.CountLines(MovedLine(h), " now goes over ") > movesBefore[h.Index]), TimeSpan.FromSeconds(60),
                "the same link to come back up at both ends after an ICE restart (or, at the end that stayed up, to move to the new pair)");
            var back = broken.ElapsedMilliseconds;
            Assert.That(hosts[0].Tail() + hosts[1].Tail(), Does.Contain("restarting ICE"));
            PingAll(lab, hosts);
            // The status files are written once a second: wait for them to show the path the link came back on.
            // Between cone NATs the relay may carry it first, until the direct pair works: wait for that one there.
            await WaitAsync(hosts, () => hosts[0].Links() is [{ State: "Up" } l] && l.Path != before.Path && (kind != NatKind.Cone || !l.Relayed),
                TimeSpan.FromSeconds(kind == NatKind.Cone ? 30 : 10), "the status to show the new path");
            var after = hosts[0].Links().Single();
            TestContext.Out.WriteLine($"down after {down} ms; back up after {back} ms over {after.Path}");
            Assert.That(after.LinkId, Is.EqualTo(before.LinkId), "recovered without a new link (same identity, same keys)");
            if (kind == NatKind.Cone)
                Assert.That(after.Relayed, Is.False, "cone NATs on both sides: back on a direct path (the remapped side's new mapping was gathered and signalled)");
        }
        finally
        {
            foreach (var host in hosts) await host.StopAsync();
            foreach (var host in hosts) TestContext.Out.WriteLine($"--- host {host.Address} output (tail):\n{host.Tail()}");
            work.Delete(recursive: true);
        }
    }

    internal static void PingAll(NatLab lab, List<HostProcess> hosts)
    {
        foreach (var from in hosts)
            foreach (var to in hosts)
            {
                if (from == to) continue;
                // -w: keep trying up to 10 s (the first packet waits for ARP through the overlay); exits 0 at the first reply.
                var ns = lab.Hosts[from.Index].Namespace;
                Assert.That(() => ns.Exec("ping", $"-c 1 -w 10 {to.Address}", TimeSpan.FromSeconds(15)), Throws.Nothing,
                    $"kernel ping {from.Address} -> {to.Address} through the overlay");
            }
    }

    /// <summary>Every host's ring successor is linked, at both ends.</summary>
    internal static bool RingFormed(List<HostProcess> hosts)
    {
        var up = hosts.ToDictionary(h => h.NodeId, h => h.UpLinks().Select(l => l.Peer).ToHashSet());
        var ring = up.Keys.Order(StringComparer.Ordinal).ToArray();
        for (var i = 0; i < ring.Length; i++)
        {
            var next = ring[(i + 1) % ring.Length];
            if (!up[ring[i]].Contains(next) || !up[next].Contains(ring[i])) return false;
        }
        return true;
    }

    /// <summary>
    /// Key files for <paramref name="count"/> hosts, created in <paramref name="directory"/> and listed in ring order (by
    /// node ID): given out by index, host i is host i-1's ring successor.
    /// </summary>
    internal static string[] KeysInRingOrder(string directory, int count) =>
        Enumerable.Range(0, count).Select(i => Path.Combine(directory, $"key{i}.pem")).OrderBy(key =>
        {
            using var identity = Overlay.Links.NodeIdentity.LoadOrCreate(key);
            return identity.NodeId;
        }, StringComparer.Ordinal).ToArray();

    /// <summary>The hosts are other processes: their status files are polled (no event crosses the process boundary).</summary>
    internal static async Task WaitAsync(List<HostProcess> hosts, Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (hosts.FirstOrDefault(h => h.HasExited) is { } dead)
                Assert.Fail($"host {dead.Address} exited while waiting for {what}:\n{dead.Tail()}");
            if (deadline.Elapsed > timeout)
                Assert.Fail($"timed out after {timeout.TotalSeconds} s waiting for {what}\n{string.Join("\n", hosts.Select(h => $"--- {h.Address}\n{h.Tail()}"))}");
            await Task.Delay(100);
        }
    }

    /// <summary>How a host differs from the plain one of its index: another account, a given key, a configured node ID, trust.</summary>
    internal sealed record HostSetup(string? Account = null, string? CertificateFile = null, string? NodeId = null, string[]? TrustedCertificates = null);

    internal sealed class HostProcess
    {
        private readonly Process _process;
        private readonly string _statusFile;
        private readonly System.Text.StringBuilder _output = new();

        private HostProcess(int index, string nodeId, string address, Process process, string statusFile)
        {
            Index = index;
            NodeId = nodeId;
            Address = address;
            _process = process;
            _statusFile = statusFile;
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) OnLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) OnLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public int Index { get; }
        public string NodeId { get; }
        public string Address { get; }
        public bool HasExited => _process.HasExited;

        /// <summary>The exit status, once exited.</summary>
        public int ExitCode => _process.ExitCode;

        /// <summary>The host's control socket (overlay status --control-socket).</summary>
        public string ControlSocket { get; private init; } = "";

        /// <summary>
        /// Starts host <paramref name="index"/>; <paramref name="stun"/> and <paramref name="turn"/> replace the lab's coturn as its
        /// servers, <paramref name="extra"/> is added to its command line, <paramref name="notifySocket"/> starts it as systemd would.
        /// </summary>
        public static HostProcess Start(NatLab lab, int index, string directory, object? links = null, HostSetup? setup = null, string[]? stun = null,
            object[]? turn = null, string extra = "", string? notifySocket = null, string? password = null)
        {
            setup ??= new HostSetup();
            // The node's key is made first: its node ID is derived from it, and the configuration names both.
            var certificate = setup.CertificateFile ?? Path.Combine(directory, $"node{index + 1}.pem");
            string nodeId;
            using (var identity = Overlay.Links.NodeIdentity.LoadOrCreate(certificate)) nodeId = identity.NodeId;
            var address = $"10.99.0.{index + 1}";
            var config = Path.Combine(directory, $"node{index + 1}.json");
            var status = Path.Combine(directory, $"node{index + 1}.status.json");
            File.WriteAllText(config, JsonSerializer.Serialize(new
            {
                NodeId = setup.NodeId ?? nodeId,
                Signal = new
                {
                    HostAddress = lab.ServerAddress.ToString(), Port = lab.Xmpp.Port, AuthenticationMethod = "password",
                    Username = $"{setup.Account ?? ProsodyServer.GroupMembers[index]}@{lab.XmppDomain}", Password = password ?? ProsodyServer.Password,
                    CaFile = lab.CaCertificatePath,
                },
                Stun = stun ?? [lab.StunTurn.ToString()],
                Turn = turn ?? [new { Address = lab.StunTurn.ToString(), User = lab.Coturn.Username, Password = lab.Coturn.Password }],
                CertificateFile = certificate,
                Links = links ?? new { },
                Overlays = new Dictionary<string, object>
                {
                    // TrustedCertificates only when set: the link-setup bench runs older hosts, which do not know the key.
                    [OverlayId] = setup.TrustedCertificates is { } trusted
                        ? new { NetDevice = new { Name = "ovl0", IP4 = address, PrefixLen = 24 }, TrustedCertificates = trusted }
                        : new { NetDevice = new { Name = "ovl0", IP4 = address, PrefixLen = 24 } },
                },
            }));
            // tests/bench/link-setup.sh points OVERLAY_HOST_DLL at another build's host to measure before and after.
            var host = Environment.GetEnvironmentVariable("OVERLAY_HOST_DLL") is { Length: > 0 } other ? other : Path.Combine(AppContext.BaseDirectory, "Overlay.Host.dll");
            var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : Prerequisites.FindOnPath("dotnet") ?? "dotnet";
            var socket = Path.Combine(directory, $"node{index + 1}.sock");
            // SIGINT as in a terminal: a shell that ran the tests in the background left it ignored, and that is inherited.
            // Another build's host (the link-setup bench) is started the way it was then: no run command, no control socket.
            var command = Environment.GetEnvironmentVariable("OVERLAY_HOST_DLL") is { Length: > 0 }
                ? $"env --default-signal=INT {dotnet} {host} {config} --status-file {status}"
                : $"env --default-signal=INT {dotnet} {host} run {config} --status-file {status} --control-socket {socket} {extra}";
            // As systemd starts a service: its own PID in SYSTEMD_EXEC_PID, and where to send READY=1 (sh execs the host, keeping the PID).
            var arguments = notifySocket is null ? $"netns exec {lab.Hosts[index].Namespace.Name} {command}"
                : $"netns exec {lab.Hosts[index].Namespace.Name} sh -c \"export SYSTEMD_EXEC_PID=$$ NOTIFY_SOCKET={notifySocket}; exec {command}\"";
            var process = Process.Start(new ProcessStartInfo("ip", arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
            }) ?? throw new InvalidOperationException("cannot start Overlay.Host");
            return new HostProcess(index, setup.NodeId ?? nodeId, address, process, status) { ControlSocket = socket };
        }

        /// <summary>The signaling state in the host's last status file, or null before the first.</summary>
        public string? Signaling() => ReadStatus(root => root.GetProperty("Signaling").GetString());

        /// <summary>Other addresses that announce this host's node ID, as its last status file shows them.</summary>
        public IReadOnlyList<string> NodeIdConflicts() =>
            ReadStatus(root => root.GetProperty("NodeIdConflicts").EnumerateArray().Select(e => e.GetString()!).ToArray()) ?? [];

        /// <summary>Reads the host's last status file (default before the first, or when it lacks what is read).</summary>
        private T? ReadStatus<T>(Func<JsonElement, T> read)
        {
            using var json = Status();
            if (json is null) return default;
            try
            {
                return read(json.RootElement);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
            {
                return default;
            }
        }

        /// <summary>Completes when the host prints a line containing both fragments (lines already printed count).</summary>
        public Task WaitForLineAsync(string first, string second, TimeSpan timeout)
        {
            var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            bool Matches(string line) => line.Contains(first, StringComparison.Ordinal) && line.Contains(second, StringComparison.Ordinal);
            lock (_output)
            {
                if (_output.ToString().Split('\n').Any(Matches)) return Task.CompletedTask;
                _lineWaiters.Add((Matches, seen));
            }
            return seen.Task.WaitAsync(timeout);
        }

        private readonly List<(Func<string, bool> Matches, TaskCompletionSource Seen)> _lineWaiters = [];

        private void OnLine(string line)
        {
            lock (_output)
            {
                _output.AppendLine(line);
                foreach (var waiter in _lineWaiters.ToArray())
                    if (waiter.Matches(line))
                    {
                        _lineWaiters.Remove(waiter);
                        waiter.Seen.TrySetResult();
                    }
            }
        }

        /// <summary>SIGINT, as Ctrl+C in its terminal.</summary>
        public void Interrupt() => Process.Start("kill", $"-INT {_process.Id}")?.WaitForExit();

        /// <summary>Waits for the host to exit and returns its exit code.</summary>
        public async Task<int> WaitForExitAsync(TimeSpan timeout)
        {
            using var wait = new CancellationTokenSource(timeout);
            await _process.WaitForExitAsync(wait.Token);
            return _process.ExitCode;
        }

        /// <summary>The links the host's last status file shows up: peer and path.</summary>
        public IReadOnlyList<(string Peer, string Path, bool Relayed)> UpLinks() =>
            [.. Links().Where(l => l.State == "Up").Select(l => (l.Peer, l.Path, l.Relayed))];

        /// <summary>Every link in the host's last status file.</summary>
        public IReadOnlyList<(string Peer, string LinkId, string State, string Path, bool Relayed)> Links() =>
            ReadStatus<(string, string, string, string, bool)[]>(root => [.. root.GetProperty("Overlays")[0].GetProperty("Links").EnumerateArray().Select(l => (
                l.GetProperty("PeerNodeId").GetString()!, l.GetProperty("LinkId").GetString()!, l.GetProperty("State").GetString()!,
                l.GetProperty("Path").ToString().ReplaceLineEndings(" "),
                l.GetProperty("Path").ValueKind == JsonValueKind.Object && l.GetProperty("Path").GetProperty("Relayed").GetBoolean()))]) ?? [];

        /// <summary>The host's last status file, parsed (null before the first); every status read goes through it.</summary>
        public JsonDocument? Status()
        {
            try
            {
                return JsonDocument.Parse(File.ReadAllText(_statusFile));
            }
            catch (Exception e) when (e is FileNotFoundException or JsonException or IOException)
            {
                return null;
            }
        }

        /// <summary>The first status the host writes after this call (it writes one a second).</summary>
        public async Task<JsonDocument> NextStatusAsync()
        {
            var after = File.Exists(_statusFile) ? File.GetLastWriteTimeUtc(_statusFile) : DateTime.MinValue;
            var waited = Stopwatch.StartNew();
            while (true)
            {
                if (File.Exists(_statusFile) && File.GetLastWriteTimeUtc(_statusFile) > after && Status() is { } status) return status;
                if (waited.Elapsed > TimeSpan.FromSeconds(10)) Assert.Fail($"host {Address} wrote no status in 10 s");
                await Task.Delay(50);
            }
        }

        /// <summary>Everything the host printed so far.</summary>
        public string Output()
        {
            lock (_output) return _output.ToString();
        }

        /// <summary>Output lines (all of them so far) that contain both fragments.</summary>
        public int CountLines(string first, string second)
        {
            lock (_output)
                return _output.ToString().Split('\n').Count(l => l.Contains(first, StringComparison.Ordinal) && l.Contains(second, StringComparison.Ordinal));
        }

        public string Tail()
        {
            lock (_output)
            {
                var lines = _output.ToString().Split('\n');
                return string.Join('\n', lines.TakeLast(40));
            }
        }

        /// <summary>SIGKILL: no teardown, no goodbye; the others must notice on their own.</summary>
        public void Kill() => _process.Kill(); // `ip netns exec` execs the host: this is the host's own PID

        public async Task StopAsync()
        {
            if (_process.HasExited) return;
            Process.Start("kill", $"-TERM {_process.Id}")?.WaitForExit();
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try { await _process.WaitForExitAsync(wait.Token); }
            catch (OperationCanceledException) { _process.Kill(entireProcessTree: true); }
        }
    }
}
