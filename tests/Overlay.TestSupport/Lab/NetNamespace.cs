using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Overlay.TestSupport.Lab;

/// <summary>
/// A Linux network namespace made for a test (<c>ip netns add</c>), removed on dispose with every
/// process still running inside it. <see cref="Run{T}(Func{T})"/> moves the calling thread into it with
/// setns(2) for the duration of a synchronous call: sockets and TAP devices created there stay in the
/// namespace after the thread returns to its own.
/// </summary>
public sealed partial class NetNamespace : IDisposable
{
    private const int CloneNewNet = 0x40000000; // setns(2): nstype for network namespaces
    private bool _disposed;

    private NetNamespace(string name) => Name = name;

    /// <summary>The namespace's name as <c>ip netns</c> shows it.</summary>
    public string Name { get; }

    /// <summary>Creates the namespace with its loopback up.</summary>
    public static NetNamespace Create(string name)
    {
        Prerequisites.Run("ip", $"netns add {name}");
        var ns = new NetNamespace(name);
        try { ns.Exec("ip", "link set lo up"); }
        catch { ns.Dispose(); throw; }
        return ns;
    }

    /// <summary>Runs <paramref name="action"/> on the calling thread inside the namespace.</summary>
    public T Run<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var original = File.OpenHandle("/proc/thread-self/ns/net");
        using var target = File.OpenHandle($"/var/run/netns/{Name}");
        Enter(target, Name);
        try
        {
            return action();
        }
        finally
        {
            // A thread left in the wrong namespace would corrupt every later test on it: fail hard.
            if (setns(original, CloneNewNet) != 0)
                Environment.FailFast($"cannot return from network namespace {Name}: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>Runs <paramref name="action"/> on the calling thread inside the namespace.</summary>
    public void Run(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        Run<object?>(() => { action(); return null; });
    }

    /// <summary>Runs a program inside the namespace to completion and returns its standard output.</summary>
    public string Exec(string command, string arguments, TimeSpan? timeout = null) =>
        Prerequisites.Run("ip", $"netns exec {Name} {command} {arguments}", timeout);

    /// <summary>Starts a long-running program inside the namespace; output is redirected.</summary>
    public Process Start(string command, string arguments) =>
        Process.Start(new ProcessStartInfo("ip", $"netns exec {Name} {command} {arguments}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException($"cannot start {command} in {Name}");

    /// <summary>Kills what runs inside and deletes the namespace.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        KillAllInside(Name);
        try { Prerequisites.Run("ip", $"netns del {Name}"); }
        catch (InvalidOperationException) { /* already gone */ }
    }

    internal static void KillAllInside(string name)
    {
        try
        {
            var pids = Prerequisites.Run("ip", $"netns pids {name}");
            foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                try { using var p = Process.GetProcessById(int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture)); p.Kill(entireProcessTree: true); p.WaitForExit(5000); }
                catch (ArgumentException) { }
                catch (InvalidOperationException) { }
            }
        }
        catch (InvalidOperationException) { }
    }

    private static void Enter(SafeFileHandle target, string name)
    {
        if (setns(target, CloneNewNet) != 0)
            throw new InvalidOperationException($"setns into {name} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(SafeFileHandle fd, int nstype);
}
