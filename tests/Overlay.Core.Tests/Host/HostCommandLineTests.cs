using NUnit.Framework;
using Overlay.Host;

namespace Overlay.Core.Tests.Host;

/// <summary>The host program's command line as a script sees it: help and version on stdout, and the documented exit codes.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class HostCommandLineTests
{
    [Test]
    public async Task Help_and_version_go_to_stdout_and_exit_0()
    {
        var (code, output, _) = await RunAsync("--help");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(output, Does.Contain("run <config>").And.Contain("status"));
        (code, output, _) = await RunAsync("--version");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(output, Does.Match(@"^\d+\.\d+\.\d+"));
    }

    [Test]
    public async Task A_wrong_option_or_a_bad_configuration_exits_2_naming_it()
    {
        var (code, _, error) = await RunAsync("run --no-such-option x.json");
        Assert.That(code, Is.EqualTo(ExitCodes.Configuration));
        Assert.That(error, Does.Contain("--no-such-option"));

        (code, _, error) = await RunAsync("run --metrics graphite x.json");
        Assert.That(code, Is.EqualTo(ExitCodes.Configuration));
        Assert.That(error, Does.Contain("--metrics: 'graphite'"));
        (code, _, error) = await RunAsync("run --metrics prometheus=9464 x.json");
        Assert.That(code, Is.EqualTo(ExitCodes.Configuration));
        Assert.That(error, Does.Contain("not ADDRESS:PORT"));

        var directory = Directory.CreateTempSubdirectory("overlay-cli-");
        try
        {
            var config = Path.Combine(directory.FullName, "node.json");
            await File.WriteAllTextAsync(config, """{ "Overlays": { "o": { "NetDevice": { "IP4": "10.40.0.1", "PrefixLen": 24 } } }, "NoSuchKey": 1 }""");
            (code, _, error) = await RunAsync($"run {config} --control-socket {directory.FullName}/s.sock");
            Assert.That(code, Is.EqualTo(ExitCodes.Configuration));
            Assert.That(error, Does.Contain("NoSuchKey"));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Test]
    public async Task An_unreachable_signaling_server_exits_4_and_status_without_a_node_exits_7()
    {
        var directory = Directory.CreateTempSubdirectory("overlay-cli-");
        try
        {
            // An in-memory NIC (no Name), so that no root is needed; nothing listens on port 1.
            var config = Path.Combine(directory.FullName, "node.json");
            await File.WriteAllTextAsync(config, """
                { "Signal": { "HostAddress": "127.0.0.1", "Port": 1, "Username": "n@overlay.test", "Password": "p" },
                  "Overlays": { "o": { "NetDevice": { "IP4": "10.40.0.1", "PrefixLen": 24 } } } }
                """);
            File.SetUnixFileMode(config, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var socket = Path.Combine(directory.FullName, "s.sock");
            var (code, _, error) = await RunAsync($"run {config} --control-socket {socket}");
            Assert.That(code, Is.EqualTo(ExitCodes.SignalingUnreachable), error);
            Assert.That(error, Does.Contain("cannot reach signaling"));
            Assert.That(error, Does.Not.Contain("   at "), "one line with the cause, no stack trace");

            (code, _, error) = await RunAsync($"status --control-socket {socket}");
            Assert.That(code, Is.EqualTo(ExitCodes.NotRunning));
            Assert.That(error, Does.Contain("no node answers"));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Test]
    public async Task A_metrics_address_that_is_taken_exits_6()
    {
        var directory = Directory.CreateTempSubdirectory("overlay-cli-");
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            // A node alone (in-process signaling, an in-memory NIC): it starts without root or servers.
            var config = Path.Combine(directory.FullName, "node.json");
            await File.WriteAllTextAsync(config, """{ "Overlays": { "o": { "NetDevice": { "IP4": "10.40.0.1", "PrefixLen": 24 } } } }""");
            var (code, _, error) = await RunAsync(
                $"run {config} --control-socket {directory.FullName}/s.sock --metrics prometheus=127.0.0.1:{((System.Net.IPEndPoint)taken.LocalEndpoint).Port}");
            Assert.That(code, Is.EqualTo(ExitCodes.ControlUnavailable), error);
            Assert.That(error, Does.Contain("cannot serve the metrics"));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static Task<(int Code, string Output, string Error)> RunAsync(string arguments) => HostProgram.RunAsync(arguments);
}
