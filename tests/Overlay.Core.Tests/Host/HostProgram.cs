using System.Diagnostics;
using Overlay.TestSupport;

namespace Overlay.Core.Tests.Host;

/// <summary>Runs the host program (Overlay.Host.dll from this test's output) to its end, as root or as another user.</summary>
internal static class HostProgram
{
    /// <summary>Runs it with <paramref name="arguments"/>; as <paramref name="asUser"/> through setpriv when given.</summary>
    public static async Task<(int Code, string Output, string Error)> RunAsync(string arguments, int? asUser = null)
    {
        var host = Path.Combine(AppContext.BaseDirectory, "Overlay.Host.dll");
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : Prerequisites.FindOnPath("dotnet") ?? "dotnet";
        var start = asUser is { } uid
            ? new ProcessStartInfo("setpriv", $"--reuid={uid} --regid={uid} --clear-groups {dotnet} {host} {arguments}")
            : new ProcessStartInfo(dotnet, $"{host} {arguments}");
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        start.Environment["HOME"] = Path.GetTempPath(); // another user's home may not exist
        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start the host");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }
}
