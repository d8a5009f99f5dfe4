using System.Diagnostics;
using NUnit.Framework;

namespace Overlay.TestSupport;

/// <summary>
/// Guards for tests that need more than a plain process: root, network namespaces, server binaries.
/// On a developer machine a missing prerequisite skips the test with the reason; under CI
/// (<c>CI=true</c>) it fails the test, so a broken CI machine can never pass by skipping.
/// </summary>
public static class Prerequisites
{
    /// <summary>True when the run is under CI, where every prerequisite must be present.</summary>
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>True when the process runs as root (needed for TAP devices and network namespaces).</summary>
    public static bool IsRoot => Environment.UserName == "root" || GetEffectiveUserId() == 0;

    /// <summary>Skips (or, under CI, fails) unless running as root on Linux.</summary>
    public static void RequireRoot()
    {
        if (!OperatingSystem.IsLinux()) Missing("needs Linux");
        if (!IsRoot) Missing("needs root (CAP_NET_ADMIN) for TAP devices and network namespaces");
    }

    /// <summary>Skips (or fails under CI) unless root and the tools for network namespaces are present.</summary>
    public static void RequireNetworkNamespaces()
    {
        RequireRoot();
        RequireCommand("ip", "iproute2");
        RequireCommand("iptables", "iptables");
    }

    /// <summary>The Debian package of each tool a lab test may run in its namespaces.</summary>
    private static readonly Dictionary<string, string> LabTools = new(StringComparer.Ordinal)
    {
        ["ping"] = "iputils-ping", ["ss"] = "iproute2", ["conntrack"] = "conntrack", ["iperf3"] = "iperf3",
        ["chromium"] = "chromium", ["curl"] = "curl", ["python3"] = "python3", ["ip6tables"] = "iptables",
    };

    /// <summary>
    /// Skips (or fails under CI) unless a <c>NatLab</c> with coturn and prosody can run: root, namespaces, both servers,
    /// and each of <paramref name="tools"/> (ping, ss, conntrack, iperf3, chromium, curl, python3, ip6tables).
    /// </summary>
    public static void RequireLab(params string[] tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        RequireNetworkNamespaces();
        RequireCommand("turnserver", "coturn");
        RequireCommand("prosody", "prosody");
        foreach (var tool in tools)
            RequireCommand(tool, LabTools.TryGetValue(tool, out var package) ? package : throw new ArgumentException($"no package known for '{tool}'", nameof(tools)));
    }

    /// <summary>Skips (or fails under CI) unless <paramref name="command"/> is on PATH.</summary>
    public static string RequireCommand(string command, string package)
    {
        var path = FindOnPath(command);
        if (path is null) Missing($"needs '{command}' (apt-get install -y {package})");
        return path!;
    }

    /// <summary>Finds an executable on PATH (and the sbin directories root usually has).</summary>
    public static string? FindOnPath(string command)
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);
        foreach (var dir in dirs)
        {
            var candidate = Path.Combine(dir, command);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static void Missing(string reason)
    {
        if (IsCi) Assert.Fail($"prerequisite missing under CI: {reason}");
        Assert.Ignore($"skipped: {reason}");
    }

    private static uint GetEffectiveUserId()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("Uid:", StringComparison.Ordinal))
                {
                    var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                    return uint.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException) { }
        return uint.MaxValue;
    }

    /// <summary>Runs a command to completion and returns its output; throws with stderr on failure.</summary>
    public static string Run(string file, string arguments, TimeSpan? timeout = null)
    {
        using var p = Process.Start(new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {arguments} did not finish");
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {arguments} exited {p.ExitCode}: {stderr.Result}{stdout.Result}");
        return stdout.Result;
    }
}
