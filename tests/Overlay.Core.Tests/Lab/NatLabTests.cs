using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NUnit.Framework;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Lab;

/// <summary>
/// Proves the lab itself behaves as the NAT traversal tests assume: what the server sees of each host,
/// and that prosody demands STARTTLS. Uses hand-written STUN so it does not depend on the code under test.
/// </summary>
[TestFixture]
[NonParallelizable]
public class NatLabTests
{
    [Test]
    public async Task Server_sees_a_cone_host_as_its_router_and_a_public_host_as_itself()
    {
        await using var lab = await NatLab.StartAsync([NatKind.Cone, NatKind.Public, NatKind.Symmetric]);
        foreach (var host in lab.Hosts)
        {
            var mapped = await MappedAddressAsync(host, lab.StunTurn);
            Assert.That(mapped.Address, Is.EqualTo(host.PublicAddress), $"{host.Kind} host {host.Address}");
        }
    }

    [Test]
    public async Task Blocked_udp_gets_no_answer_until_unblocked()
    {
        await using var lab = await NatLab.StartAsync([NatKind.Cone]);
        var host = lab.Hosts[0];
        host.BlockUdp();
        Assert.That(async () => await MappedAddressAsync(host, lab.StunTurn, TimeSpan.FromMilliseconds(500)), Throws.InstanceOf<OperationCanceledException>());
        host.UnblockUdp();
        Assert.That((await MappedAddressAsync(host, lab.StunTurn)).Address, Is.EqualTo(host.PublicAddress));
    }

    [Test]
    public async Task Prosody_on_loopback_requires_starttls()
    {
        await using var prosody = await ProsodyServer.StartAsync();
        using var client = new TcpClient();
        await client.ConnectAsync(prosody.EndPoint);
        await AssertStartTlsRequiredAsync(client, prosody.Domain);
    }

    [Test]
    public async Task Prosody_in_the_lab_is_reached_from_behind_a_nat_and_requires_starttls()
    {
        await using var lab = await NatLab.StartAsync([NatKind.Cone], xmpp: true);
        using var client = lab.Hosts[0].Namespace.Run(() => new TcpClient());
        await client.ConnectAsync(lab.Xmpp);
        await AssertStartTlsRequiredAsync(client, lab.XmppDomain);
        Assert.That(File.ReadAllText(lab.CaCertificatePath), Does.StartWith("-----BEGIN CERTIFICATE-----"));
    }

    private static async Task AssertStartTlsRequiredAsync(TcpClient client, string domain)
    {
        var stream = client.GetStream();
        var open = $"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        await stream.WriteAsync(Encoding.UTF8.GetBytes(open));
        var received = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!received.ToString().Contains("</stream:features>", StringComparison.Ordinal))
        {
            var n = await stream.ReadAsync(buffer, timeout.Token);
            Assert.That(n, Is.GreaterThan(0), $"stream closed early: {received}");
            received.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        Assert.That(received.ToString(), Does.Contain("urn:ietf:params:xml:ns:xmpp-tls").And.Contain("<required"));
    }

    /// <summary>Sends an RFC 8489 Binding request from inside the host and decodes XOR-MAPPED-ADDRESS.</summary>
    private static async Task<IPEndPoint> MappedAddressAsync(LabHost host, IPEndPoint server, TimeSpan? timeout = null)
    {
        using var socket = host.Namespace.Run(() => new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp));
        var request = new byte[20];
        BinaryPrimitives.WriteUInt16BigEndian(request, 0x0001);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(4), 0x2112A442);
        Random.Shared.NextBytes(request.AsSpan(8, 12));
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        await socket.SendToAsync(request, server, cts.Token);
        var buffer = new byte[1500];
        var n = await socket.ReceiveAsync(buffer, cts.Token);
        var response = buffer.AsSpan(0, n);
        Assert.That(BinaryPrimitives.ReadUInt16BigEndian(response), Is.EqualTo(0x0101));
        for (var offset = 20; offset + 4 <= n;)
        {
            var type = BinaryPrimitives.ReadUInt16BigEndian(response[offset..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(response[(offset + 2)..]);
            if (type == 0x0020) // XOR-MAPPED-ADDRESS, IPv4
            {
                var port = BinaryPrimitives.ReadUInt16BigEndian(response[(offset + 6)..]) ^ 0x2112;
                var address = BinaryPrimitives.ReadUInt32BigEndian(response[(offset + 8)..]) ^ 0x2112A442;
                return new IPEndPoint(new IPAddress(BinaryPrimitives.ReverseEndianness(address)), port);
            }
            offset += 4 + ((length + 3) & ~3);
        }
        Assert.Fail("no XOR-MAPPED-ADDRESS in the response");
        return null!;
    }
}
