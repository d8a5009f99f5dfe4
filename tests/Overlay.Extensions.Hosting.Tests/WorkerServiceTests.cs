using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Extensions.Hosting.Tests;

/// <summary>
/// samples/Overlay.WorkerService as a user runs it: two processes, each configured by the sample's appsettings.json and
/// environment variables only (the password among them), signaling through a real prosody, with real links on this
/// machine. A worker stopped by SIGTERM says goodbye; started again, it has the same node ID (its state directory).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed partial class WorkerServiceTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    [Test]
    public async Task Two_workers_configured_by_appsettings_and_the_environment_link_and_stop_cleanly()
    {
        await using var prosody = await ProsodyServer.StartAsync();
        var state = Directory.CreateTempSubdirectory("overlay-worker-");
        WorkerProcess? a = null, b = null;
        try
        {
            a = WorkerProcess.Start(prosody, 0, state.FullName);
            b = WorkerProcess.Start(prosody, 1, state.FullName);
            var idA = (await a.WaitForAsync(Ready(), Wait)).Groups[1].Value;
            var idB = (await b.WaitForAsync(Ready(), Wait)).Groups[1].Value;

            await a.WaitForAsync(new Regex($"link to {idB} Up over "), Wait);
            await b.WaitForAsync(new Regex($"link to {idA} Up over "), Wait);

            var goodbye = b.WaitForAsync(new Regex($"link to {idA} Closed"), Wait);
            var stopped = Stopwatch.StartNew();
            a.Terminate();
            await goodbye;
            Assert.That(await a.WaitForExitAsync(Wait), Is.Zero, a.Output);
            TestContext.Out.WriteLine($"SIGTERM to the peer seeing the link closed: {stopped.ElapsedMilliseconds} ms");

            a = WorkerProcess.Start(prosody, 0, state.FullName);
            Assert.That((await a.WaitForAsync(Ready(), Wait)).Groups[1].Value, Is.EqualTo(idA), "the key, and so the ID, kept in the state directory");
            await b.WaitForAsync(new Regex($"link to {idA} Up over "), Wait);
        }
        finally
        {
            foreach (var worker in new[] { a, b }) worker?.Dispose();
            state.Delete(recursive: true);
        }
    }

    [Test]
    public async Task Without_the_password_from_the_environment_the_worker_stops_naming_the_key()
    {
        using var worker = WorkerProcess.Start(new Dictionary<string, string>());
        Assert.That(await worker.WaitForExitAsync(Wait), Is.Not.Zero);
        Assert.That(worker.Output, Does.Contain("configuration Signal.Password: is required"));
    }

    [GeneratedRegex(@"node ([0-9a-f]{32}) ready on ovl1")]
    private static partial Regex Ready();

    /// <summary>One Overlay.WorkerService process, its output kept and watched.</summary>
    private sealed class WorkerProcess : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly List<(Regex Pattern, TaskCompletionSource<Match> Found)> _waiters = [];

        private WorkerProcess(Process process)
        {
            _process = process;
            process.OutputDataReceived += (_, e) => OnLine(e.Data);
            process.ErrorDataReceived += (_, e) => OnLine(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public string Output
        {
            get { lock (_output) return _output.ToString(); }
        }

        /// <summary>A worker for prosody's account node(index+1), keeping its state below <paramref name="stateRoot"/>.</summary>
        public static WorkerProcess Start(ProsodyServer prosody, int index, string stateRoot) => Start(new Dictionary<string, string>
        {
            ["Overlay__Signal__HostAddress"] = prosody.EndPoint.Address.ToString(),
            ["Overlay__Signal__Port"] = prosody.EndPoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Overlay__Signal__Username"] = $"{ProsodyServer.GroupMembers[index]}@{prosody.Domain}",
            ["Overlay__Signal__Password"] = ProsodyServer.Password,
            ["Overlay__Signal__CaFile"] = prosody.CaCertificatePath,
            ["Overlay__StateDirectory"] = Path.Combine(stateRoot, $"node{index + 1}"),
            ["Overlay__Overlays__ovl1__NetDevice__IP4"] = $"10.10.0.{index + 1}",
        });

        public static WorkerProcess Start(Dictionary<string, string> environment)
        {
            var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : Prerequisites.FindOnPath("dotnet") ?? "dotnet";
            var start = new ProcessStartInfo(dotnet, Path.Combine(AppContext.BaseDirectory, "Overlay.WorkerService.dll"))
            {
                // The content root, where appsettings.json is, is the working directory.
                WorkingDirectory = AppContext.BaseDirectory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var (key, value) in environment) start.Environment[key] = value;
            return new WorkerProcess(Process.Start(start) ?? throw new InvalidOperationException("cannot start Overlay.WorkerService"));
        }

        private void OnLine(string? line)
        {
            if (line is null) return;
            lock (_output)
            {
                _output.AppendLine(line);
                foreach (var waiter in _waiters.ToArray())
                    if (waiter.Pattern.Match(line) is { Success: true } match)
                    {
                        _waiters.Remove(waiter);
                        waiter.Found.TrySetResult(match);
                    }
            }
        }

        /// <summary>The first line matching <paramref name="pattern"/> from now on, or from what was written already.</summary>
        public async Task<Match> WaitForAsync(Regex pattern, TimeSpan timeout)
        {
            var found = new TaskCompletionSource<Match>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_output)
            {
                var earlier = _output.ToString().Split('\n').Select(l => pattern.Match(l)).FirstOrDefault(m => m.Success);
                if (earlier is not null) return earlier;
                _waiters.Add((pattern, found));
            }
            try
            {
                return await found.Task.WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"no line matching '{pattern}' within {timeout.TotalSeconds} s; the worker wrote:\n{Output}");
            }
        }

        /// <summary>SIGTERM, as systemd or Ctrl+C stops a worker.</summary>
        public void Terminate() => Prerequisites.Run("kill", $"-TERM {_process.Id}");

        public async Task<int> WaitForExitAsync(TimeSpan timeout)
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
            return _process.ExitCode;
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }
}
