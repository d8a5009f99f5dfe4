using System.Diagnostics;
using System.Text;

namespace Overlay.TestSupport.Lab;

/// <summary>A server program a fixture started; keeps the tail of its output for error messages.</summary>
internal sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ServerProcess(Process process, string name)
    {
        _process = process;
        Name = name;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }

    public bool HasExited => _process.HasExited;

    public string Output { get { lock (_output) return _output.ToString(); } }

    public static ServerProcess Start(string name, string file, string arguments, NetNamespace? ns)
    {
        var psi = ns is null
            ? new ProcessStartInfo(file, arguments)
            : new ProcessStartInfo("ip", $"netns exec {ns.Name} {file} {arguments}");
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {name}");
        return new ServerProcess(p, name);
    }

    /// <summary>Polls <paramref name="ready"/> until it holds, the process dies, or the timeout passes.</summary>
    public async Task WaitReadyAsync(Func<Task<bool>> ready, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        var delay = TimeSpan.FromMilliseconds(20);
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"{Name} exited with {_process.ExitCode} while starting:\n{Output}");
            if (await ready().ConfigureAwait(false)) return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{Name} not ready after {timeout.TotalSeconds:0} s:\n{Output}");
            // Readiness of a foreign process has no event to await; back off between probes.
            await Task.Delay(delay, ct).ConfigureAwait(false);
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 200));
        }
    }

    public void Stop()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException) { }
    }

    public void Dispose()
    {
        Stop();
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output)
        {
            if (_output.Length > 64_000) _output.Remove(0, 32_000);
            _output.AppendLine(line);
        }
    }
}
