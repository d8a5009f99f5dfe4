using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using NUnit.Framework;
using Overlay.Nat;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;
using Overlay.Transport;

namespace Overlay.Core.Tests.Nat;

/// <summary>STUN and TURN against a real coturn on loopback.</summary>
public class TurnClientTests
{
    private sealed class Inbox : IDatagramReceiver
    {
        public Channel<byte[]> Received { get; } = Channel.CreateUnbounded<byte[]>();

        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch) => Received.Writer.TryWrite(datagram.ToArray());
    }

    [Test]
    public async Task Binding_request_discovers_the_server_reflexive_address()
    {
        await using var coturn = await CoturnServer.StartAsync();
        using var endpoint = new StunEndpoint(UdpMux.Bind(), TimeProvider.System);
        endpoint.Mux.Attach(null); // a loop of its own
        var mapped = await endpoint.DiscoverMappedAddressAsync(coturn.EndPoint).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(mapped, Is.Not.Null);
        Assert.That(mapped!.Value.ToEndPoint(), Is.EqualTo(new IPEndPoint(IPAddress.Loopback, endpoint.Mux.LocalEndPoint.Port)));
    }

    /// <summary>The server over <paramref name="transport"/>: TLS on its own port, trusting only the test CA.</summary>
    private static TurnServer ServerOver(CoturnServer coturn, TurnTransport transport, string? password = null) =>
        new(transport == TurnTransport.Tls ? coturn.TlsEndPoint! : coturn.EndPoint, coturn.Username, password ?? coturn.Password)
        {
            Transport = transport,
            TrustedRoots = transport == TurnTransport.Tls ? LoadRoots(coturn.CaCertificatePath) : null,
        };

    private static System.Security.Cryptography.X509Certificates.X509Certificate2Collection LoadRoots(string path)
    {
        var roots = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
        roots.ImportFromPemFile(path);
        return roots;
    }

    [TestCase("Udp", false)]
    [TestCase("Tcp", false)]
    [TestCase("Tls", false)]
    [TestCase("Udp", true)]
    [TestCase("Tcp", true)]
    [TestCase("Tls", true)]
    public async Task Allocation_relays_data_both_ways_by_indications_and_by_channel(string over, bool ipv6)
    {
        var transport = Enum.Parse<TurnTransport>(over);
        // Over IPv6 the server is reached at ::1 and asked for an IPv6 relay (REQUESTED-ADDRESS-FAMILY), whose peer is IPv6.
        var loopback = ipv6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        await using var coturn = await CoturnServer.StartAsync(address: loopback, tlsPort: transport == TurnTransport.Tls ? 0 : null);
        using var endpoint = new StunEndpoint(UdpMux.Bind(), TimeProvider.System);
        var turn = endpoint.AttachTurn(ServerOver(coturn, transport));
        endpoint.Mux.Attach(null); // a loop of its own
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        Assert.That(await turn.AllocateAsync(cts.Token), Is.True, "Allocate (after the 401 challenge)");
        Assert.That(turn.RelayedAddress, Is.Not.Null);
        var relayed = turn.RelayedAddress!.Value.ToEndPoint();
        Assert.That(relayed.Address, Is.EqualTo(loopback));
        Assert.That(turn.RelayFamily, Is.EqualTo(loopback.AddressFamily));

        using var peer = new Socket(loopback.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(loopback, 0));
        var peerAddress = new StunAddress((IPEndPoint)peer.LocalEndPoint!);
        var inbox = new Inbox();
        turn.AddDataRoute(peerAddress, inbox);
        Assert.That(await turn.CreatePermissionAsync(peerAddress, cts.Token), Is.True);

        // Send indication out, Data indication back.
        Assert.That(turn.SendTo([0xC0, 1, 2, 3], peerAddress), Is.True);
        var (payload, from) = await ReceiveAsync(peer, cts.Token);
        Assert.That(payload, Is.EqualTo(new byte[] { 0xC0, 1, 2, 3 }));
        Assert.That(from, Is.EqualTo(relayed));
        await peer.SendToAsync(new byte[] { 0xC1, 9, 8 }, relayed, cts.Token);
        Assert.That(await inbox.Received.Reader.ReadAsync(cts.Token), Is.EqualTo(new byte[] { 0xC1, 9, 8 }));

        // ChannelBind, then ChannelData both ways, framed in the 4 bytes of headroom.
        Assert.That(await turn.BindChannelAsync(peerAddress, cts.Token), Is.True);
        Assert.That(turn.ChannelFor(peerAddress), Is.EqualTo(ChannelData.FirstChannel));
        var framed = new byte[] { 0, 0, 0, 0, 0xC2, 7, 7, 7, 7 };
        Assert.That(turn.TrySendFramed(framed, 5, peerAddress), Is.True);
        (payload, _) = await ReceiveAsync(peer, cts.Token);
        Assert.That(payload, Is.EqualTo(new byte[] { 0xC2, 7, 7, 7, 7 }));
        await peer.SendToAsync(new byte[] { 0xC3, 5 }, relayed, cts.Token);
        Assert.That(await inbox.Received.Reader.ReadAsync(cts.Token), Is.EqualTo(new byte[] { 0xC3, 5 }));

        // Over a stream, ChannelData is padded to 4 bytes both ways (RFC 8656 §12.5): odd lengths in a row keep framing.
        for (var length = 1; length <= 7; length++)
        {
            var odd = new byte[ChannelData.HeaderSize + length];
            odd[ChannelData.HeaderSize] = 0xC4;
            Assert.That(turn.TrySendFramed(odd, length, peerAddress), Is.True);
            (payload, _) = await ReceiveAsync(peer, cts.Token);
            Assert.That(payload, Has.Length.EqualTo(length));
            await peer.SendToAsync(odd.AsMemory(ChannelData.HeaderSize, length), relayed, cts.Token);
            Assert.That(await inbox.Received.Reader.ReadAsync(cts.Token), Has.Length.EqualTo(length));
        }
        Assert.That(turn.IsStream, Is.EqualTo(transport != TurnTransport.Udp));

        Assert.That(await turn.RefreshAsync(TimeSpan.FromMinutes(10), cts.Token), Is.True, "Refresh");
        await turn.DisposeAsync(); // Refresh with LIFETIME 0
        Assert.That(turn.Dropped, Is.Zero);
    }

    [Test]
    public async Task A_server_on_ipv6_without_ipv6_relays_refuses_the_family_and_an_ipv4_relay_is_allocated()
    {
        // coturn on ::1 relaying from 127.0.0.1 only: the IPv6 relay asked for is refused with 440 (RFC 8656 §7.2).
        await using var coturn = await CoturnServer.StartAsync(address: IPAddress.IPv6Loopback, relayAddress: IPAddress.Loopback);
        using var log = new ListLoggerFactory("turn");
        using var endpoint = new StunEndpoint(UdpMux.Bind(), TimeProvider.System, log.CreateLogger("turn"));
        var turn = endpoint.AttachTurn(ServerOver(coturn, TurnTransport.Udp));
        endpoint.Mux.Attach(null);
        Assert.That(await turn.AllocateAsync().WaitAsync(TimeSpan.FromSeconds(20)), Is.True);
        Assert.That(turn.RelayedAddress!.Value.ToEndPoint().Address, Is.EqualTo(IPAddress.Loopback), "an IPv4 relay rather than none");
        Assert.That(log.Lines, Has.Some.Contains("has no IPv6 relay (440)"));
        await turn.DisposeAsync();
    }

    [Test]
    public async Task A_tls_server_whose_certificate_chains_to_another_ca_is_refused()
    {
        await using var coturn = await CoturnServer.StartAsync(tlsPort: 0);
        await using var other = await CoturnServer.StartAsync(tlsPort: 0); // its own CA
        using var endpoint = new StunEndpoint(UdpMux.Bind(), TimeProvider.System);
        var turn = endpoint.AttachTurn(ServerOver(coturn, TurnTransport.Tls) with { TrustedRoots = LoadRoots(other.CaCertificatePath) });
        endpoint.Mux.Attach(null);
        Assert.That(await turn.AllocateAsync().WaitAsync(TimeSpan.FromSeconds(20)), Is.False);
        Assert.That(turn.Stream!.IsOpen, Is.False);
        await turn.DisposeAsync();
    }

    [Test]
    public async Task Permissions_of_peers_no_longer_used_are_not_refreshed()
    {
        await using var coturn = await CoturnServer.StartAsync();
        var time = new ManualTimeProvider();
        using var endpoint = new StunEndpoint(UdpMux.Bind(), time);
        var turn = endpoint.AttachTurn(new TurnServer(coturn.EndPoint, coturn.Username, coturn.Password));
        endpoint.Mux.Attach(null); // a loop of its own
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        Assert.That(await turn.AllocateAsync(cts.Token), Is.True);
        var kept = new StunAddress(new IPEndPoint(IPAddress.Loopback, 40001));
        var other = new StunAddress(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 40002));
        Assert.That(await turn.CreatePermissionAsync(kept, cts.Token), Is.True);
        Assert.That(await turn.CreatePermissionAsync(other, cts.Token), Is.True);

        turn.RetainPermissions(IPAddress.Loopback); // the selected pair's peer
        var before = turn.PermissionRequests;
        time.Advance(TimeSpan.FromMinutes(5)); // maintenance every 30 s refreshes permissions older than 4 min

        Assert.That(turn.PermittedPeers, Is.EqualTo(new[] { IPAddress.Loopback }));
        Assert.That(turn.PermissionRequests - before, Is.EqualTo(1), "only the kept peer's permission was refreshed");
    }

    [Test]
    public async Task Wrong_password_fails_the_allocation_without_looping()
    {
        await using var coturn = await CoturnServer.StartAsync();
        using var endpoint = new StunEndpoint(UdpMux.Bind(), TimeProvider.System);
        var turn = endpoint.AttachTurn(new TurnServer(coturn.EndPoint, coturn.Username, "not-the-password"));
        endpoint.Mux.Attach(null); // a loop of its own
        Assert.That(await turn.AllocateAsync().WaitAsync(TimeSpan.FromSeconds(20)), Is.False);
        Assert.That(turn.RelayedAddress, Is.Null);
    }

    private static async Task<(byte[] Payload, IPEndPoint From)> ReceiveAsync(Socket socket, CancellationToken ct)
    {
        var buffer = new byte[2048];
        var result = await socket.ReceiveFromAsync(buffer, new IPEndPoint(socket.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0), ct);
        return (buffer.AsSpan(0, result.ReceivedBytes).ToArray(), (IPEndPoint)result.RemoteEndPoint);
    }
}
