using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Overlay.TestSupport.Lab;

/// <summary>
/// A real prosody XMPP server for a test: STARTTLS required, a self-signed certificate for
/// <see cref="Domain"/> (trust it through <see cref="CaCertificatePath"/>), users node1..node8 with
/// password "secret" in the shared roster group "overlay1" (node5..node8 also in "overlay2"), and user "outsider" in no group.
/// Listens on a free loopback port by default, or on 5222 of a given address inside a namespace.
/// </summary>
public sealed class ProsodyServer : IAsyncDisposable
{
    /// <summary>The shared roster group every nodeN account belongs to.</summary>
    public const string Group = "overlay1";

    /// <summary>A second shared group, of <see cref="SecondGroupMembers"/>: node5..node8.</summary>
    public const string SecondGroup = "overlay2";

    /// <summary>The accounts also in <see cref="SecondGroup"/>.</summary>
    public static IReadOnlyList<string> SecondGroupMembers { get; } = Enumerable.Range(5, 4).Select(i => $"node{i}").ToArray();

    /// <summary>The password of every account.</summary>
    public const string Password = "secret";

    private readonly NetNamespace? _namespace;
    private readonly string _directory;
    private ServerProcess? _process;

    private ProsodyServer(NetNamespace? ns, string directory, IPEndPoint endPoint)
    {
        _namespace = ns;
        _directory = directory;
        EndPoint = endPoint;
    }

    /// <summary>Where clients connect (plain TCP, then STARTTLS).</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>The XMPP domain, "overlay.test".</summary>
    public string Domain => "overlay.test";

    /// <summary>PEM file of the server's self-signed certificate, to trust as a CA.</summary>
    public string CaCertificatePath => Path.Combine(_directory, "overlay.test.crt");

    /// <summary>The accounts in the shared group: node1..node8.</summary>
    public static IReadOnlyList<string> GroupMembers { get; } = Enumerable.Range(1, 8).Select(i => $"node{i}").ToArray();

    /// <summary>An account that exists but is in no group.</summary>
    public static string Outsider => "outsider";

    /// <summary>The server's log so far.</summary>
    public string Log => File.Exists(Path.Combine(_directory, "prosody.log")) ? File.ReadAllText(Path.Combine(_directory, "prosody.log")) : "";

    /// <summary>Writes the configuration, certificate and accounts, starts prosody and waits until it accepts connections.</summary>
    public static async Task<ProsodyServer> StartAsync(NetNamespace? ns = null, IPAddress? address = null, CancellationToken ct = default)
    {
        Prerequisites.RequireRoot(); // prosody refuses to run as root; it is started as the prosody user
        Prerequisites.RequireCommand("prosody", "prosody");
        Prerequisites.RequireCommand("runuser", "util-linux");
        address ??= IPAddress.Loopback;
        var port = ns is null ? FreePort.Tcp(address) : 5222;
        var dir = Directory.CreateTempSubdirectory("overlay-prosody-").FullName;
        var server = new ProsodyServer(ns, dir, new IPEndPoint(address, port));
        try
        {
            server.WriteFiles();
            await server.StartAgainAsync(ct).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return server;
    }

    /// <summary>Starts prosody (again, after <see cref="StopAsync"/>) and waits until it accepts connections.</summary>
    public async Task StartAgainAsync(CancellationToken ct = default)
    {
        if (_process is { HasExited: false }) return;
        _process?.Dispose();
        _process = ServerProcess.Start("prosody", Prerequisites.FindOnPath("runuser")!,
            $"-u prosody -- prosody --config {Path.Combine(_directory, "prosody.cfg.lua")}", _namespace);
        await _process.WaitReadyAsync(AcceptsAsync, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
    }

    /// <summary>Stops prosody (SIGTERM, as an operator would), closing every client stream.</summary>
    public async Task StopAsync()
    {
        if (_process is null) return;
        var pidFile = Path.Combine(_directory, "prosody.pid");
        if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid))
        {
            try { Prerequisites.Run("kill", $"-TERM {pid}"); } catch (InvalidOperationException) { }
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (!_process.HasExited && !exited.IsCancellationRequested)
                await Task.Delay(20, CancellationToken.None).ConfigureAwait(false);
        }
        _process.Stop();
        File.Delete(pidFile);
    }

    private async Task<bool> AcceptsAsync()
    {
        Socket NewSocket() => new(EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var socket = _namespace is null ? NewSocket() : _namespace.Run(NewSocket);
        try
        {
            await socket.ConnectAsync(EndPoint).ConfigureAwait(false);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private void WriteFiles()
    {
        using (var key = RSA.Create(2048))
        {
            var request = new CertificateRequest($"CN={Domain}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            var san = new SubjectAlternativeNameBuilder();
            san.AddDnsName(Domain);
            request.CertificateExtensions.Add(san.Build());
            using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
            File.WriteAllText(CaCertificatePath, cert.ExportCertificatePem());
            File.WriteAllText(Path.Combine(_directory, "overlay.test.key"), key.ExportPkcs8PrivateKeyPem());
        }

        var cfg = new StringBuilder();
        cfg.AppendLine($"pidfile = \"{_directory}/prosody.pid\"");
        cfg.AppendLine($"data_path = \"{_directory}/data\"");
        cfg.AppendLine("daemonize = false");
        cfg.AppendLine($"c2s_interfaces = {{ \"{EndPoint.Address}\" }}");
        cfg.AppendLine($"c2s_ports = {{ {EndPoint.Port} }}");
        cfg.AppendLine("c2s_direct_tls_ports = {}; s2s_ports = {}; http_ports = {}; https_ports = {}; component_ports = {}");
        cfg.AppendLine($"log = {{ info = \"{_directory}/prosody.log\" }}");
        cfg.AppendLine("modules_enabled = { \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"ping\"; \"groups\" }");
        cfg.AppendLine("modules_disabled = { \"s2s\" }");
        // Plain storage lets prosody offer SCRAM-SHA-1, SCRAM-SHA-256 and PLAIN (inside TLS) alike.
        cfg.AppendLine("authentication = \"internal_plain\"");
        cfg.AppendLine("c2s_require_encryption = true");
        cfg.AppendLine("allow_registration = false");
        cfg.AppendLine($"groups_file = \"{_directory}/groups.txt\"");
        cfg.AppendLine($"VirtualHost \"{Domain}\"");
        cfg.AppendLine($"  ssl = {{ key = \"{_directory}/overlay.test.key\"; certificate = \"{CaCertificatePath}\" }}");
        File.WriteAllText(Path.Combine(_directory, "prosody.cfg.lua"), cfg.ToString());

        File.WriteAllText(Path.Combine(_directory, "groups.txt"),
            $"[{Group}]\n" + string.Concat(GroupMembers.Select(u => $"{u}@{Domain}\n"))
            + $"[{SecondGroup}]\n" + string.Concat(SecondGroupMembers.Select(u => $"{u}@{Domain}\n")));

        // prosody stores a host's data under its name with '.' escaped as %2e.
        var accounts = Path.Combine(_directory, "data", Domain.Replace(".", "%2e", StringComparison.Ordinal), "accounts");
        Directory.CreateDirectory(accounts);
        foreach (var user in GroupMembers.Append(Outsider))
            File.WriteAllText(Path.Combine(accounts, $"{user}.dat"), $"return {{\n\t[\"password\"] = \"{Password}\";\n}};\n");

        Prerequisites.Run("chown", $"-R prosody:prosody {_directory}");
        Prerequisites.Run("chmod", $"-R u+rwX,go+rX {_directory}");
    }

    /// <summary>Stops prosody and removes its files.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            _process.Dispose();
            _process = null;
        }
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
        await Task.CompletedTask.ConfigureAwait(false);
    }
}
