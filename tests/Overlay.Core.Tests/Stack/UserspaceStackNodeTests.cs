using System.Net;
using NUnit.Framework;
using Overlay.Signaling.InProcess;

namespace Overlay.Core.Tests.Stack;

/// <summary>Two nodes, each with the userspace stack on the overlay, over real links (ICE host candidates, DTLS, AES-GCM) on this machine.</summary>
[TestFixture]
[CancelAfter(120_000)]
public sealed class UserspaceStackNodeTests
{
    [TestCase("10.61.0.1/24", "10.61.0.2/24")]
    [TestCase("fd61::1/64", "fd61::2/64")]
    public async Task Two_userspace_stacks_carry_a_TCP_stream_each_way_over_a_real_link(string first, string second, CancellationToken cancellationToken)
    {
        var hub = new InProcessSignalingHub();
        await using var server = await UserspaceNodes.StartAsync(hub, first);
        await using var client = await UserspaceNodes.StartAsync(hub, second);
        await UserspaceNodes.WaitForLinkAsync(client, TimeSpan.FromSeconds(30));

        await using var listener = await server.Network(UserspaceNodes.OverlayId).ListenAsync(5000);
        var accepted = listener.AcceptAsync(cancellationToken).AsTask();
        await using var stream = await client.Network(UserspaceNodes.OverlayId).ConnectAsync(UserspaceNodes.Address(first), 5000, cancellationToken);
        await using var peer = await accepted;

        const long size = 32L << 20;
        var up = UserspaceNodes.WriteRandomAsync(stream, size, 1, cancellationToken);
        var upRead = UserspaceNodes.ReadAllAsync(peer, cancellationToken);
        var sent = await up;
        stream.CompleteWrites();
        var (received, length) = await upRead;
        Assert.That(length, Is.EqualTo(size));
        Assert.That(received, Is.EqualTo(sent));

        var down = UserspaceNodes.WriteRandomAsync(peer, size, 2, cancellationToken);
        var downRead = UserspaceNodes.ReadAllAsync(stream, cancellationToken);
        var sentDown = await down;
        peer.CompleteWrites();
        var (receivedDown, lengthDown) = await downRead;
        Assert.That(lengthDown, Is.EqualTo(size));
        Assert.That(receivedDown, Is.EqualTo(sentDown));
    }

    [Test]
    public async Task HttpClient_fetches_a_page_served_by_another_node_through_the_stack(CancellationToken cancellationToken)
    {
        var hub = new InProcessSignalingHub();
        await using var server = await UserspaceNodes.StartAsync(hub, "10.62.0.1/24");
        await using var client = await UserspaceNodes.StartAsync(hub, "10.62.0.2/24");
        await UserspaceNodes.WaitForLinkAsync(client, TimeSpan.FromSeconds(30));

        // A one-page HTTP/1.1 server on the stack: enough to show HttpClient's connection going through it.
        await using var listener = await server.Network(UserspaceNodes.OverlayId).ListenAsync(80);
        var serving = Task.Run(async () =>
        {
            await using var connection = await listener.AcceptAsync(cancellationToken);
            var request = new byte[4096];
            var length = 0;
            while (!System.Text.Encoding.ASCII.GetString(request, 0, length).Contains("\r\n\r\n", StringComparison.Ordinal))
                length += await connection.ReadAsync(request.AsMemory(length), cancellationToken);
            var body = "hello from the overlay"u8.ToArray();
            var head = System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
            await connection.WriteAsync(head, cancellationToken);
            await connection.WriteAsync(body, cancellationToken);
            connection.CompleteWrites();
        }, cancellationToken);

        using var http = new HttpClient(client.Network(UserspaceNodes.OverlayId).CreateHttpHandler());
        var page = await http.GetStringAsync(new Uri("http://10.62.0.1/"), cancellationToken);
        Assert.That(page, Is.EqualTo("hello from the overlay"));
        await serving;
    }

    [Test]
    public async Task Udp_datagrams_cross_between_two_stacks(CancellationToken cancellationToken)
    {
        var hub = new InProcessSignalingHub();
        await using var a = await UserspaceNodes.StartAsync(hub, "10.63.0.1/24");
        await using var b = await UserspaceNodes.StartAsync(hub, "10.63.0.2/24");
        await UserspaceNodes.WaitForLinkAsync(b, TimeSpan.FromSeconds(30));
        await using var receiver = a.Network(UserspaceNodes.OverlayId).BindUdp(7000);
        await using var sender = b.Network(UserspaceNodes.OverlayId).BindUdp();
        await sender.SendToAsync("ping"u8.ToArray(), new IPEndPoint(IPAddress.Parse("10.63.0.1"), 7000), cancellationToken);
        var buffer = new byte[100];
        var result = await receiver.ReceiveFromAsync(buffer, cancellationToken);
        Assert.That(buffer.AsSpan(0, result.Length).ToArray(), Is.EqualTo("ping"u8.ToArray()));
        Assert.That(result.RemoteEndPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse("10.63.0.2"), sender.Port)));
    }

    [Test]
    public void The_JSON_key_Userspace_chooses_the_stack()
    {
        var options = OverlayConfiguration.Parse("""{ "Overlays": { "a": { "NetDevice": { "Userspace": true, "IP4": "10.0.0.1" } } } }""");
        Assert.That(options.Overlays[0].NetDevice.UserspaceStack, Is.True);
        var error = Assert.Throws<OverlayConfigurationException>(() =>
            OverlayConfiguration.Parse("""{ "Overlays": { "a": { "NetDevice": { "Userspace": true, "Name": "t0", "IP4": "10.0.0.1" } } } }"""));
        Assert.That(error!.Key, Is.EqualTo("Overlays.a.NetDevice.Userspace"));
    }

    [Test]
    public void A_userspace_stack_without_an_address_is_a_configuration_error()
    {
        var error = Assert.Throws<OverlayConfigurationException>(() => OverlayNode.Create()
            .JoinOverlay("x", o => o.WithUserspaceStack().WithAddress("10.0.0.1/24"))
            .JoinOverlay("y", o => o.WithUserspaceStack())
            .BuildOptions());
        Assert.That(error!.Message, Does.Contain("address"));
    }
}
