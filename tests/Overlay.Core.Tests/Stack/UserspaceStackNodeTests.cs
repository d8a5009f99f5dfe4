using System.Net;
using NUnit.Framework;
using Overlay.Signaling.InProcess;
using Overlay.Stack;

namespace Overlay.Core.Tests.Stack;

/// <summary>
/// Two nodes, each with the userspace stack on the overlay, over real links (ICE host candidates, DTLS, AES-GCM) on this
/// machine; SHA-256 compared each way, clean, with 2% of frames lost and with frames reordered, over IPv4 and IPv6.
/// </summary>
[TestFixture]
[CancelAfter(120_000)]
public sealed class UserspaceStackNodeTests
{
    /// <summary>MiB each way; <c>OVERLAY_STACK_INTEROP_MIB=1024</c> runs the 1 GiB by hand.</summary>
    private static long SizeMiB(long ciDefault) =>
        long.TryParse(Environment.GetEnvironmentVariable("OVERLAY_STACK_INTEROP_MIB"), out var mib) ? mib : ciDefault;

    [TestCase("10.61.0.1/24", "10.61.0.2/24", 0.0, 0.0, 32, 1)]
    [TestCase("fd61::1/64", "fd61::2/64", 0.0, 0.0, 32, 2)]
    [TestCase("10.61.0.1/24", "10.61.0.2/24", 0.02, 0.0, 16, 3)]
    [TestCase("10.61.0.1/24", "10.61.0.2/24", 0.0, 0.05, 16, 4)]
    [TestCase("fd61::1/64", "fd61::2/64", 0.02, 0.05, 16, 5)]
    public async Task Two_userspace_stacks_carry_a_TCP_stream_each_way_over_a_real_link(string first, string second, double loss, double reorder,
        long ciMiB, int seed, CancellationToken cancellationToken)
    {
        var size = SizeMiB(ciMiB) << 20;
        TestContext.Out.WriteLine($"seed {seed}, loss {loss}, reorder {reorder}, {size >> 20} MiB each way");
        var hub = new InProcessSignalingHub();
        await using var server = await UserspaceNodes.StartAsync(hub, first);
        // The client's stack sits behind a device that loses and reorders frames both ways, between it and its switch.
        UserspaceStack? clientStack = null;
        LossyDevice? lossy = null;
        await using var client = OverlayNode.Create().UseInProcessSignaling(hub).JoinOverlay(UserspaceNodes.OverlayId, o => o.WithUserspaceStack().WithAddress(second)).Build();
        client.DeviceFactory = overlay =>
        {
            clientStack = new UserspaceStack("stack-lossy", new UserspaceStackOptions
            {
                MacAddress = System.Net.NetworkInformation.PhysicalAddress.Parse("02-61-00-00-00-02"),
                IPv4Address = second.Contains(':', StringComparison.Ordinal) ? null : UserspaceNodes.Address(second),
                IPv6Address = second.Contains(':', StringComparison.Ordinal) ? UserspaceNodes.Address(second) : null,
                Mtu = overlay.NetDevice.Mtu,
            });
            return lossy = new LossyDevice(clientStack, loss, reorder, seed);
        };
        await client.StartAsync(cancellationToken);
        await UserspaceNodes.WaitForLinkAsync(client, TimeSpan.FromSeconds(30));

        await using var listener = await server.Network(UserspaceNodes.OverlayId).ListenAsync(5000);
        var accepted = listener.AcceptAsync(cancellationToken).AsTask();
        await using var stream = await clientStack!.ConnectAsync(UserspaceNodes.Address(first), 5000, cancellationToken);
        await using var peer = await accepted;

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var up = UserspaceNodes.WriteRandomAsync(stream, size, 1, cancellationToken);
        var upRead = UserspaceNodes.ReadAllAsync(peer, cancellationToken);
        var sent = await up;
        stream.CompleteWrites();
        var (received, length) = await upRead;
        var upSeconds = watch.Elapsed.TotalSeconds;
        Assert.That(length, Is.EqualTo(size));
        Assert.That(received, Is.EqualTo(sent));

        watch.Restart();
        var down = UserspaceNodes.WriteRandomAsync(peer, size, 2, cancellationToken);
        var downRead = UserspaceNodes.ReadAllAsync(stream, cancellationToken);
        var sentDown = await down;
        peer.CompleteWrites();
        var (receivedDown, lengthDown) = await downRead;
        var downSeconds = watch.Elapsed.TotalSeconds;
        Assert.That(lengthDown, Is.EqualTo(size));
        Assert.That(receivedDown, Is.EqualTo(sentDown));
        TestContext.Out.WriteLine($"up {upSeconds:F1} s ({size * 8 / upSeconds / 1e6:F0} Mbit/s), down {downSeconds:F1} s ({size * 8 / downSeconds / 1e6:F0} Mbit/s); " +
            $"frames lost on purpose {lossy!.Dropped}, held frames released by the time limit {lossy.ReleasedLate}; client retransmits {clientStack.Statistics.Retransmits}");
        if (loss > 0) Assert.That(lossy.Dropped, Is.GreaterThan(0), "the device lost frames");
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
