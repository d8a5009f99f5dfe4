using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Overlay.TestSupport.Lab;

/// <summary>
/// A real coturn STUN/TURN server for a test: on a free loopback port by default, or on a given address
/// inside a namespace (the NAT lab's server). Long-term credentials <see cref="Username"/>/<see cref="Password"/>.
/// </summary>
public sealed class CoturnServer : IAsyncDisposable
{
    private readonly ServerProcess _process;
    private readonly string _directory;

    private CoturnServer(ServerProcess process, string directory, IPEndPoint endPoint)
    {
        _process = process;
        _directory = directory;
        EndPoint = endPoint;
    }

    /// <summary>Where the server listens for STUN and TURN over UDP (and over TCP on the same port).</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>Where the server listens for TURN over TLS, when started with TLS.</summary>
    public IPEndPoint? TlsEndPoint { get; private set; }

    /// <summary>PEM of the test CA that issued the TLS certificate (for the server's address and <see cref="TlsName"/>).</summary>
    public string CaCertificatePath => Path.Combine(_directory, "turn-ca.crt");

    /// <summary>The DNS name the TLS certificate carries besides the address.</summary>
    public static string TlsName => "turn.overlay.test";

    /// <summary>TURN long-term credential user name.</summary>
    public string Username => "node";

    /// <summary>TURN long-term credential password.</summary>
    public string Password => "secret";

    /// <summary>TURN realm.</summary>
    public string Realm => "overlay.test";

    /// <summary>The server's log so far (for failure messages).</summary>
    public string Log => File.Exists(LogPath) ? File.ReadAllText(LogPath) : _process.Output;

    private string LogPath => Path.Combine(_directory, "turn.log");

    /// <summary>
    /// Starts coturn and waits until it answers a STUN binding request. With <paramref name="tlsPort"/> it also serves
    /// TURN over TLS there, with a certificate from a CA made for the test (<see cref="CaCertificatePath"/>). Relayed
    /// addresses are taken from <paramref name="address"/>, or from <paramref name="relayAddress"/> (a server on IPv6
    /// with only an IPv4 relay, say).
    /// </summary>
    public static async Task<CoturnServer> StartAsync(NetNamespace? ns = null, IPAddress? address = null, CancellationToken ct = default, int? tlsPort = null,
        IPAddress? relayAddress = null)
    {
        Prerequisites.RequireCommand("turnserver", "coturn");
        address ??= IPAddress.Loopback;
        relayAddress ??= address;
        var port = ns is null && IPAddress.IsLoopback(address) ? FreePort.Udp(address) : 3478;
        var dir = Directory.CreateTempSubdirectory("overlay-coturn-").FullName;
        var loopback = IPAddress.IsLoopback(address) ? " --allow-loopback-peers" : "";
        int? tlsListening = tlsPort is { } p ? (p == 0 ? FreePort.Tcp(address, ns) : p) : null;
        var tls = tlsListening is { } t ? $" --tls-listening-port={t} --cert={dir}/turn.crt --pkey={dir}/turn.key" : " --no-tls";
        if (tlsPort is not null) WriteTlsFiles(dir, address);
        var args = $"-n --listening-ip={address} --listening-port={port} --relay-ip={relayAddress} --external-ip={relayAddress}" +
                   $" --realm=overlay.test --user=node:secret --lt-cred-mech --fingerprint{tls} --no-dtls --no-cli" +
                   $" --no-rfc5780 --no-software-attribute --log-file={dir}/turn.log --simple-log --pidfile={dir}/turn.pid{loopback}";
        var process = ServerProcess.Start("coturn", Prerequisites.FindOnPath("turnserver")!, args, ns);
        var server = new CoturnServer(process, dir, new IPEndPoint(address, port));
        if (tlsListening is { } listening) server.TlsEndPoint = new IPEndPoint(address, listening);
        try
        {
            await process.WaitReadyAsync(() => server.AnswersBindingAsync(ns, ct), TimeSpan.FromSeconds(20), ct).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return server;
    }

    /// <summary>A CA, and a server certificate it issued for <paramref name="address"/> and <see cref="TlsName"/>.</summary>
    private static void WriteTlsFiles(string dir, IPAddress address)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=Overlay test TURN CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={TlsName}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(TlsName);
        san.AddIpAddress(address);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var serial = new byte[8];
        RandomNumberGenerator.Fill(serial);
        using var cert = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), serial);
        File.WriteAllText(Path.Combine(dir, "turn-ca.crt"), ca.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "turn.crt"), cert.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "turn.key"), key.ExportPkcs8PrivateKeyPem());
    }

    private async Task<bool> AnswersBindingAsync(NetNamespace? ns, CancellationToken ct)
    {
        Socket NewSocket() => new(EndPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        using var socket = ns is null ? NewSocket() : ns.Run(NewSocket);
        // RFC 8489 §5: a Binding request with no attributes.
        var request = new byte[20];
        BinaryPrimitives.WriteUInt16BigEndian(request, 0x0001);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(4), 0x2112A442);
        Random.Shared.NextBytes(request.AsSpan(8, 12));
        await socket.SendToAsync(request, EndPoint, ct).ConfigureAwait(false);
        var buffer = new byte[1500];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromMilliseconds(200));
        try
        {
            var n = await socket.ReceiveAsync(buffer, timeout.Token).ConfigureAwait(false);
            return n >= 20 && BinaryPrimitives.ReadUInt16BigEndian(buffer) == 0x0101
                && buffer.AsSpan(8, 12).SequenceEqual(request.AsSpan(8, 12));
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return false;
        }
        catch (SocketException)
        {
            return false; // ICMP port unreachable while coturn is still binding
        }
    }

    /// <summary>Stops the server and removes its files.</summary>
    public ValueTask DisposeAsync()
    {
        _process.Dispose();
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }
}
