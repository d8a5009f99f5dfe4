using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NUnit.Framework;
using Overlay.Host;
using Overlay.Host.Control;
using Overlay.TestSupport;

namespace Overlay.Core.Tests.Host;

/// <summary>
/// The host's control socket: only the user the node runs as (and root) gets an answer. Another user is kept out by
/// the socket's mode and directory, and, when those were widened, by the kernel's word on who connected (SO_PEERCRED).
/// The other user is real: <c>overlay status</c> runs as uid 65534 (nobody) through setpriv.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ControlSocketTests
{
    private const int Nobody = 65534;
    private DirectoryInfo _directory = null!;
    private string _path = null!;
    private ControlSocket _socket = null!;

    [SetUp]
    public async Task StartSocket()
    {
        _directory = Directory.CreateTempSubdirectory("overlay-control-");
        _path = Path.Combine(_directory.FullName, "overlay.sock");
        var status = new HostStatus("0123456789abcdef0123456789abcdef", "sha-256 00", "Connected", "test", DateTimeOffset.UnixEpoch, []);
        _socket = new ControlSocket(_path, () => Task.FromResult(status), NullLogger<ControlSocket>.Instance);
        await _socket.StartAsync(CancellationToken.None);
    }

    [TearDown]
    public async Task StopSocket()
    {
        await _socket.DisposeAsync();
        _directory.Delete(recursive: true);
    }

    [Test]
    public async Task The_owner_gets_the_status_as_text_and_json_and_the_socket_is_owner_only()
    {
        Assert.That(File.GetUnixFileMode(_path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        var (code, output, error) = await StatusAsync(asUser: null, "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        using var json = JsonDocument.Parse(output);
        Assert.That(json.RootElement.GetProperty("NodeId").GetString(), Is.EqualTo("0123456789abcdef0123456789abcdef"));
        (code, output, error) = await StatusAsync(asUser: null);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        Assert.That(output, Does.StartWith("node 0123456789abcdef0123456789abcdef"));
    }

    [Test]
    public async Task Another_user_is_refused_by_the_file_mode_and_again_by_its_credentials_when_the_mode_is_widened()
    {
        Prerequisites.RequireRoot();
        Prerequisites.RequireCommand("setpriv", "util-linux");
        var (code, _, error) = await StatusAsync(Nobody);
        Assert.That(code, Is.EqualTo(ExitCodes.NotPermitted), $"uid {Nobody} cannot even reach the socket: {error}");
        Assert.That(error, Does.Contain("permission denied"));

        // An operator widened the directory and the socket: the kernel still says who connects, and the node refuses.
        File.SetUnixFileMode(_directory.FullName, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(_path, (UnixFileMode)0b110_110_110);
        (code, var output, error) = await StatusAsync(Nobody, "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.NotPermitted), error);
        Assert.That(error, Does.Contain($"uid {Nobody} may not ask this node"));
        Assert.That(output, Is.Empty, "nothing of the status reaches the other user");
        Assert.That(_socket.Refused, Is.EqualTo(1));
    }

    [Test]
    public async Task A_second_node_on_the_same_socket_is_refused_and_a_stale_socket_is_replaced()
    {
        var second = new ControlSocket(_path, () => throw new InvalidOperationException(), NullLogger<ControlSocket>.Instance);
        var e = await Assert.ThrowsAsync<ControlSocketException>(() => second.StartAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("another node answers"));
        // At the default path (not asked for), a second node runs on without a socket; the first keeps answering.
        await using (var optional = new ControlSocket(_path, () => throw new InvalidOperationException(), NullLogger<ControlSocket>.Instance, required: false))
        {
            await optional.StartAsync(CancellationToken.None);
            Assert.That(await ControlSocket.AskAsync(_path, "status"), Does.StartWith("node 0123456789abcdef0123456789abcdef"));
        }
        Assert.That(File.Exists(_path), "the second node leaves the first one's socket alone when it stops");

        // The first stops without removing its socket file (as if killed): the next one takes the path over.
        await _socket.DisposeAsync();
        // .NET unlinks a socket it bound when it closes it: a second name (a hard link) outlives it, as a killed node's would.
        var bound = _path + ".bound";
        using (var stale = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            stale.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(bound));
            Prerequisites.Run("ln", $"{bound} {_path}");
        }
        Assert.That(File.Exists(_path));
        var status = new HostStatus("fedcba9876543210fedcba9876543210", "sha-256 00", "Connected", "test", DateTimeOffset.UnixEpoch, []);
        _socket = new ControlSocket(_path, () => Task.FromResult(status), NullLogger<ControlSocket>.Instance);
        await _socket.StartAsync(CancellationToken.None);
        Assert.That(await ControlSocket.AskAsync(_path, "status"), Does.StartWith("node fedcba9876543210fedcba9876543210"));
    }

    /// <summary>Runs <c>overlay status</c> (the host program) as root, or as <paramref name="asUser"/> through setpriv.</summary>
    private Task<(int Code, string Output, string Error)> StatusAsync(int? asUser, string options = "") =>
        HostProgram.RunAsync($"status --control-socket {_path} {options}", asUser);
}
